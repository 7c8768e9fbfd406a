"""Dropout masks, drawn on the host from the run's own random generator.

Why not each backend's own dropout: masks drawn here are the same whichever backend trains, so
the three backends can be proven equal with dropout on, and the generator's state is saved in
every checkpoint, so a resumed run draws exactly the masks it would have drawn.

A mask is a keep-mask already scaled by 1 / (1 - rate) ("inverted" dropout: nothing changes
at evaluation), batch-first ``[B, T, F]`` with a fresh value for every element and time step.
Masks act on the input of each recurrent layer (except a one-hot input, which has no
features to drop, and the first layer's with ``input_dropout`` off) and on the readout's input
(a segment decoder's: ``[B, M, H]``, one per decoder row; its decoder step reads learned rows,
which no mask touches).  NumPy only.
"""

from __future__ import annotations

import numpy as np

from .cells import ModelSpec, layer_input_size


def mask_sites(spec: ModelSpec, input_dropout: bool = True) -> dict[str, int]:
    """Where dropout acts, and the width of each site: ``layers.{k}`` (the input of recurrent
    layer k; layer 0's only for input features and ``input_dropout``) and ``readout`` (the top
    layer's output, before the readout)."""
    first = input_dropout and spec.input_kind != "onehot"
    sites = {f"layers.{k}": layer_input_size(spec, k) for k in range(spec.num_layers) if k > 0 or first}
    sites["readout"] = spec.hidden_size
    return sites


_LEVELS = 1 << 16


def dropout_masks(
    spec: ModelSpec,
    rate: float,
    rng: np.random.Generator,
    batch_size: int,
    seq_len: int,
    dtype=np.float32,
    input_dropout: bool = True,
) -> dict[str, np.ndarray] | None:
    """One training step's masks: site -> ``[B, T, F]`` array of 0 and about 1 / (1 - rate); None
    when ``rate`` is 0 (no dropout, and nothing drawn from ``rng``).  ``input_dropout``: whether
    the first layer's input features are a site (``mask_sites``)."""
    if rate == 0:
        return None
    if not 0 < rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    # 16-bit draws: half the bytes of float32 ones, and the generator's output is the cost (best-300s's
    # masks took 6 ms of an 82 ms NumPy step, then 3 ms), four to each of the bit generator's 64-bit
    # words: the very numbers ``integers(0, 65536, dtype=uint16)`` gives, without its bounded-draw
    # machinery (1.0 ms against 1.8 ms for best-300s's masks).  The drop probability
    # is the rate rounded to 1/65536 (kept within [1, 65535] / 65536); the scale is the rounded keep
    # probability's inverse, so a mask's mean is 1.
    cut = min(max(round(rate * _LEVELS), 1), _LEVELS - 1)
    scale = np.asarray(_LEVELS / (_LEVELS - cut), dtype)
    masks = {}
    for site, width in mask_sites(spec, input_dropout).items():
        # A segment decoder's readout reads its M decoder rows, not the input steps.
        steps = spec.decode_steps if site == "readout" and spec.decodes else seq_len
        size = batch_size * steps * width
        draws = rng.bit_generator.random_raw(-(-size // 4)).view(np.uint16)[:size]
        keep = draws.reshape(batch_size, steps, width) >= cut
        masks[site] = keep * scale  # bool * scalar: the dtype of ``scale``
    return masks


def rows(masks: dict | None, take) -> dict | None:
    """``take`` (a function of one array, e.g. this process's rows of a batch) applied to every mask."""
    return None if masks is None else {site: take(m) for site, m in masks.items()}
