"""The recurrent state every backend passes around, and the one place that knows its shape.

A carry is a list over layers.  Each layer's carry is one ``[B, H]`` array (the hidden state
``h``) or, for a cell whose table row carries more parts (``Cell.carry``: LSTM's ``("h", "c")``),
a tuple of arrays in that order.  The arrays may be NumPy, JAX or torch; these helpers only
take the structure apart and put it back, so nothing else asks ``isinstance(c, tuple)``.
"""

from __future__ import annotations


def parts(layer) -> tuple:
    """The arrays of one layer's carry, in ``Cell.carry`` order: ``(h,)`` or ``(h, c)``."""
    return layer if isinstance(layer, tuple) else (layer,)


def pack(arrays) -> object:
    """One layer's carry from its arrays (the inverse of ``parts``)."""
    arrays = tuple(arrays)
    return arrays if len(arrays) > 1 else arrays[0]


def hidden(layer):
    """The hidden state ``h`` of one layer's carry (what the next layer reads)."""
    return parts(layer)[0]


def with_hidden(layer, h):
    """One layer's carry with ``h`` replaced, its other parts kept."""
    return pack((h, *parts(layer)[1:]))


def cell_state(layer):
    """LSTM's ``c`` of one layer's carry; None for a cell that carries ``h`` only."""
    p = parts(layer)
    return p[1] if len(p) > 1 else None


def map_arrays(fn, carry: list) -> list:
    """The carry with ``fn`` applied to every array (moving it between devices, taking rows)."""
    return [pack(fn(a) for a in parts(layer)) for layer in carry]


def join(fn, carries: list) -> list:
    """One carry from several of the same structure: per layer and part, ``fn(*pieces)``
    (``np.concatenate`` of the pieces, for the rows of several processes)."""
    return [pack(fn(*pieces) for pieces in zip(*(parts(layer) for layer in layers))) for layers in zip(*carries)]
