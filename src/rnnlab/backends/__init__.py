"""Backends compute the same model on different engines; each is imported only when chosen."""

import importlib

from ..errors import UserError

BACKENDS = {"numpy": "rnnlab.backends.numpy_backend", "jax": "rnnlab.backends.jax_backend",
            "torch": "rnnlab.backends.torch_backend"}


def get_backend(name: str):
    """The backend module called ``name`` (imports its engine on first use)."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
