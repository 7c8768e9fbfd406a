"""rnnlab: small recurrent networks on NumPy, JAX and PyTorch."""

__version__ = "0.1.0"

from .api import Run, fit  # noqa: E402,F401
from .cells import ModelSpec, init_params, param_shapes  # noqa: E402,F401
from .errors import UserError  # noqa: E402,F401
from .model import Model, load  # noqa: E402,F401
