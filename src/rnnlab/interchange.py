"""Moving models in and out: the classic formats next to rnnlab's canonical parameters.

* min-char-rnn (the from-scratch exercise): ``Wxh (H, V)``, ``Whh (H, H)``,
  ``Why (V, H)``, ``bh (H, 1)``, ``by (V, 1)``, column-vector convention; one
  tanh layer over one-hot characters.  Saved as ``.npz``.
* A plain PyTorch ``state_dict`` of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` plus
  ``nn.Linear``: ``{rnn}.weight_ih_l{k}``, ``{rnn}.weight_hh_l{k}``,
  ``{rnn}.bias_ih_l{k}``, ``{rnn}.bias_hh_l{k}``, ``{fc}.weight``, ``{fc}.bias``
  (prefixes ``rnn`` and ``fc`` by default).  Saved with ``torch.save`` (``.pt``)
  or as safetensors, which needs no torch.

The mapping is exact (see ``cells.py``): ``W = weight_ih.T``, ``U = weight_hh.T``.
rnnlab's rnn and lstm have one bias, PyTorch two that are only ever added, so
export puts it in ``bias_ih`` with ``bias_hh = 0`` and import adds them; the GRU
keeps both (``b`` and ``b_U``).  The Cho ``gru`` cell and the ``dense_relu``
input layer have no built-in PyTorch equivalent and are refused with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cells import CELL_TABLE, CELLS, ModelSpec, cell_info, cell_of_torch_module, check_params, readout_weight
from .errors import UserError

# PyTorch's recurrent modules, told apart by the gate count of weight_hh (a fact of PyTorch,
# not of rnnlab: which cell each is, is the cell table's to say).
TORCH_MODULE_BY_GATES = {1: "nn.RNN", 3: "nn.GRU", 4: "nn.LSTM"}
# safetensors metadata key naming the cell of exported weights, read back on import
CELL_METADATA = "rnnlab.cell"
MIN_CHAR_RNN_KEYS = ("Wxh", "Whh", "Why", "bh", "by")
# the one cell the min-char-rnn format holds (the table's row that names the format)
MIN_CHAR_RNN_CELL = next(c.name for c in CELL_TABLE.values() if "min-char-rnn" in c.exports)


def to_min_char_rnn(spec: ModelSpec, params: dict) -> dict[str, np.ndarray]:
    """Canonical parameters of a one-layer one-hot rnn -> the min-char-rnn weights."""
    if "min-char-rnn" not in spec.cell_info.exports or spec.num_layers != 1 or spec.input_kind != "onehot":
        raise UserError(
            f"min-char-rnn holds one tanh rnn layer over one-hot characters; this model is "
            f"{spec.num_layers} {spec.cell} layer(s) over {spec.input_kind} input (use --format torch)"
        )
    return {
        "Wxh": params["layers.0.W"].T.copy(),
        "Whh": params["layers.0.U"].T.copy(),
        "Why": params["readout.W"].T.copy(),
        "bh": params["layers.0.b"][:, None].copy(),
        "by": params["readout.b"][:, None].copy(),
    }


def from_min_char_rnn(weights: dict, where: str = "weights") -> tuple[ModelSpec, dict]:
    """min-char-rnn weights -> (spec, canonical parameters)."""
    missing = [k for k in MIN_CHAR_RNN_KEYS if k not in weights]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}; min-char-rnn weights are {', '.join(MIN_CHAR_RNN_KEYS)}")
    w = {k: np.asarray(weights[k]) for k in MIN_CHAR_RNN_KEYS}
    check_weights(w, where, matrices=("Wxh", "Whh", "Why"))
    H, V = w["Wxh"].shape
    spec = ModelSpec(MIN_CHAR_RNN_CELL, V, H, V, 1, "onehot")
    params = {
        "layers.0.W": w["Wxh"].T,
        "layers.0.U": w["Whh"].T,
        "layers.0.b": w["bh"].reshape(-1),
        "readout.W": w["Why"].T,
        "readout.b": w["by"].reshape(-1),
    }
    params = {k: np.ascontiguousarray(v) for k, v in params.items()}
    check_params(spec, params, where)
    return spec, params


def to_torch_state_dict(spec: ModelSpec, params: dict, rnn: str = "rnn", fc: str = "fc") -> dict[str, np.ndarray]:
    """Canonical parameters -> the state_dict (as arrays) of ``{rnn}: nn.RNN/GRU/LSTM`` + ``{fc}: nn.Linear``.

    The recurrent module takes ``input_size = spec.input_size`` (one-hot vectors for a
    char model), ``batch_first`` as the user likes; the Linear reads its output.  A model with
    an embedding adds ``embed.weight`` (an ``nn.Embedding`` in front); with tied weights
    ``{fc}.weight`` holds the same table.
    """
    if spec.cell_info.torch_module is None:
        raise UserError(
            f"cell {spec.cell!r} has no PyTorch module: {spec.cell_info.no_torch_reason}. "
            "Export it in rnnlab's own format instead"
        )
    if spec.input_kind == "dense_relu":
        raise UserError(
            "the dense_relu input layer (Dense-ReLU before the recurrent layer) is not part of "
            "nn.RNN/nn.GRU/nn.LSTM + nn.Linear"
        )
    out = {"embed.weight": params["embed.W"].copy()} if spec.input_kind == "embedding" else {}
    for k in range(spec.num_layers):
        b = params[f"layers.{k}.b"]
        out[f"{rnn}.weight_ih_l{k}"] = params[f"layers.{k}.W"].T.copy()
        out[f"{rnn}.weight_hh_l{k}"] = params[f"layers.{k}.U"].T.copy()
        out[f"{rnn}.bias_ih_l{k}"] = b.copy()
        out[f"{rnn}.bias_hh_l{k}"] = (
            params[f"layers.{k}.b_U"].copy() if "b_U" in spec.cell_info.layer_params else np.zeros_like(b)
        )
    out[f"{fc}.weight"] = readout_weight(params, spec).T.copy()
    out[f"{fc}.bias"] = params["readout.b"].copy()
    return out


def from_torch_state_dict(
    state: dict,
    input_kind: str = "onehot",
    rnn: str = "rnn",
    fc: str = "fc",
    where: str = "state_dict",
    cell: str | None = None,
) -> tuple[ModelSpec, dict]:
    """A state_dict of ``{rnn}`` + ``{fc}`` -> (spec, canonical parameters).

    A state_dict names no module: its shapes say nn.RNN, nn.GRU or nn.LSTM, and the cell is
    the one the cell table maps that module to.  ``cell`` (from the file's metadata or
    ``--cell``) must be a cell of that same module."""
    arrays = {k: _array(v) for k, v in state.items()}
    need = [f"{rnn}.weight_ih_l0", f"{rnn}.weight_hh_l0", f"{fc}.weight", f"{fc}.bias"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise UserError(
            f"{where} lacks {', '.join(missing)}; expected an nn.RNN/GRU/LSTM named {rnn!r} and an "
            f"nn.Linear named {fc!r} (see --rnn-name/--fc-name)"
        )
    check_weights(arrays, where, matrices=[k for k in arrays if ".weight" in k])
    G_H, H = arrays[f"{rnn}.weight_hh_l0"].shape
    if G_H % H or G_H // H not in TORCH_MODULE_BY_GATES:
        raise UserError(f"{where}: {rnn}.weight_hh_l0 is {G_H}x{H}; not an RNN, GRU or LSTM")
    module = TORCH_MODULE_BY_GATES[G_H // H]
    if cell is None:
        cell = cell_of_torch_module(module)
    elif cell not in CELLS or cell_info(cell).torch_module != module:
        raise UserError(
            f"{where} holds an {module}, which is not cell {cell!r}"
            + (f" (that is {cell_of_torch_module(module)})" if cell in CELLS else f"; cells are {', '.join(CELLS)}")
        )
    layers = 0
    while f"{rnn}.weight_ih_l{layers}" in arrays:
        layers += 1
    if any(k.endswith("_reverse") for k in arrays):
        raise UserError(f"{where} holds a bidirectional module; rnnlab models are one-directional")
    in_size = arrays[f"{rnn}.weight_ih_l0"].shape[1]
    out_size = arrays[f"{fc}.weight"].shape[0]
    spec = ModelSpec(cell, in_size, H, out_size, layers, input_kind)
    params = {}
    for k in range(layers):
        bias_ih = arrays.get(f"{rnn}.bias_ih_l{k}", np.zeros(G_H))
        bias_hh = arrays.get(f"{rnn}.bias_hh_l{k}", np.zeros(G_H))
        params[f"layers.{k}.W"] = arrays[f"{rnn}.weight_ih_l{k}"].T
        params[f"layers.{k}.U"] = arrays[f"{rnn}.weight_hh_l{k}"].T
        if "b_U" in cell_info(cell).layer_params:
            params[f"layers.{k}.b"], params[f"layers.{k}.b_U"] = bias_ih, bias_hh
        else:
            params[f"layers.{k}.b"] = bias_ih + bias_hh  # they are only ever added
    params["readout.W"] = arrays[f"{fc}.weight"].T
    params["readout.b"] = arrays[f"{fc}.bias"]
    dtype = arrays[f"{fc}.weight"].dtype
    params = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}
    check_params(spec, params, where)
    return spec, params


def check_weights(arrays: dict[str, np.ndarray], where: str, matrices) -> None:
    """Refuse weights no model can hold: not real floating-point numbers, empty, NaN or infinite,
    or a matrix (``matrices``) that is not 2-D; one line naming the array."""
    for name, a in arrays.items():
        if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.floating):
            raise UserError(f"{where}: {name} holds {a.dtype} values; weights are real floating-point numbers")
        if a.size == 0:
            raise UserError(f"{where}: {name} is empty (shape {a.shape}); the weights are incomplete")
        if name in matrices and a.ndim != 2:
            raise UserError(f"{where}: {name} has shape {a.shape}; a weight matrix has two axes")
        if not np.isfinite(a).all():
            raise UserError(
                f"{where}: {name} holds NaN or infinite values; export the weights of a model "
                "that trained without diverging"
            )


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], cell: str | None = None) -> Path:
    """``.npz`` (NumPy), ``.pt``/``.pth`` (``torch.save`` of tensors) or ``.safetensors``, by extension;
    a safetensors file also names its ``cell`` in its metadata, so importing it needs no ``--cell``."""
    import io

    from .checkpoint import atomic_write_output, check_output

    path = check_output(path)
    suffix = path.suffix.lower()
    buffer = io.BytesIO()
    if suffix == ".npz":
        np.savez(buffer, **arrays)
    elif suffix in (".pt", ".pth"):
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, buffer)
    elif suffix == ".safetensors":
        from safetensors.numpy import save

        buffer.write(
            save(
                {k: np.ascontiguousarray(v) for k, v in arrays.items()},
                metadata={CELL_METADATA: cell} if cell else None,
            )
        )
    else:
        raise UserError(f"cannot tell the format of {str(path)!r}: use .npz, .pt/.pth or .safetensors")
    atomic_write_output(path, buffer.getvalue())
    return path


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays from ``.npz``, ``.pt``/``.pth`` (loaded with ``weights_only=True``) or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"weights file {str(path)!r} {what}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        if suffix in (".pt", ".pth"):
            import pickle

            import torch

            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                # torch suggests weights_only=False, which would run the file's code: rnnlab never does.
                raise UserError(
                    f"cannot read {path}: it holds objects other than tensors (a pickled module or class), which "
                    "rnnlab does not load because loading them runs code from the file; save the model's "
                    "state_dict() of tensors instead"
                ) from exc
            if not isinstance(state, dict):
                raise UserError(f"{path} holds a {type(state).__name__}, not a state_dict")
            return {k: _array(v) for k, v in state.items()}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return load_file(str(path))
    except UserError:
        raise
    except Exception as exc:  # damaged or foreign files: say which, never a traceback
        raise UserError(f"cannot read {path}: {exc}") from exc
    raise UserError(f"cannot tell the format of {str(path)!r}: use .npz, .pt/.pth or .safetensors")


def cell_named_in(path: str | os.PathLike) -> str | None:
    """The cell a weights file names in its own metadata (safetensors files rnnlab exported), else None."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get(CELL_METADATA)
    except Exception:  # a damaged header is reported by load()
        return None
