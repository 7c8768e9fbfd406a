"""Backends compute the same model on different engines; each is imported only when chosen.

``BACKENDS`` is the one list of them, with what the rest of rnnlab needs to know about each
without importing its engine (``config.BACKEND_NAMES`` reads it).  Importing this package
imports no engine.
"""

import importlib
import importlib.util
from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class Backend:
    """What the rest of rnnlab knows of a backend without importing it."""

    name: str
    load: object  # () -> the backend module (imports its engine on first call)
    package: str | None  # the package that must be installed (None: NumPy, always there)
    takes_device: bool = False  # --device chooses where it computes (others choose for themselves)
    data_parallel: bool = False  # trains under torchrun (DistributedDataParallel)
    device_note: str = ""  # where it computes when it takes no --device


# Module names written out, so the import graph (tests/test_import_graph.py) can follow them.
BACKENDS = {
    b.name: b
    for b in (
        Backend(
            "numpy",
            lambda: importlib.import_module("rnnlab.backends.numpy_backend"),
            None,
            device_note="the numpy backend runs on the CPU",
        ),
        Backend(
            "jax",
            lambda: importlib.import_module("rnnlab.backends.jax_backend"),
            "jax",
            device_note="JAX picks its own device: install jax with CUDA support and leave --device at auto",
        ),
        Backend(
            "torch",
            lambda: importlib.import_module("rnnlab.backends.torch_backend"),
            "torch",
            takes_device=True,
            data_parallel=True,
        ),
    )
}


def backend_info(name: str) -> Backend:
    """The facts of backend ``name`` (nothing imported)."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def installed(name: str) -> bool:
    """Whether backend ``name``'s engine is installed (nothing imported)."""
    package = backend_info(name).package
    return package is None or importlib.util.find_spec(package) is not None


def get_backend(name: str):
    """The backend module called ``name`` (imports its engine on first use)."""
    return backend_info(name).load()


def with_devices() -> list[str]:
    """The backends that take --device."""
    return [name for name, b in BACKENDS.items() if b.takes_device]
