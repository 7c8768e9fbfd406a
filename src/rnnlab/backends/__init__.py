"""Backends compute the same model on different engines; each is imported only when chosen."""

import importlib

from ..errors import UserError

# Module names written out, so the import graph (tests/test_import_graph.py) can follow them.
BACKENDS = {
    "numpy": lambda: importlib.import_module("rnnlab.backends.numpy_backend"),
    "jax": lambda: importlib.import_module("rnnlab.backends.jax_backend"),
    "torch": lambda: importlib.import_module("rnnlab.backends.torch_backend"),
}


def get_backend(name: str):
    """The backend module called ``name`` (imports its engine on first use)."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()
