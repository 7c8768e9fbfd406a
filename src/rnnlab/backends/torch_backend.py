"""PyTorch backend: the same cells and parameter dict, on torch's own recurrent modules.

Where a cell equals a built-in, the built-in fused module does the work and
holds the canonical parameters in its own layout (PyTorch stores weights as
``(G*H, in)``, so ``weight_ih_l{k} = W.T`` and ``weight_hh_l{k} = U.T``; gate
orders already agree, see ``rnnlab.cells``):

=================  ===========================  =====================================
cell               module                       biases
=================  ===========================  =====================================
rnn                nn.RNN(nonlinearity=tanh)    bias_ih = b; bias_hh fixed at 0
gru_reset_after    nn.GRU                       bias_ih = b; bias_hh = b_U
lstm               nn.LSTM                      bias_ih = b; bias_hh fixed at 0
gru (Cho 2014)     a time loop in this module   the canonical W, U, b as they are
=================  ===========================  =====================================

A single canonical bias is the sum ``bias_ih + bias_hh`` of a built-in; holding
``bias_hh`` at zero (no gradient) keeps the mapping one-to-one.  Public arrays
are NumPy and batch-first, as on every backend; torch is imported only when
this backend is chosen.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..carry import hidden, map_arrays
from ..cells import (
    CELL_TABLE,
    ID_INPUTS,
    RMS_EPS,
    ModelSpec,
    cell_info,
    count_params,
    decoder_widths,
    has_norm,
    has_residual,
    layer_input_size,
    params_dtype,
)
from ..errors import UserError
from ..launch import local_rank as launch_local_rank
from ..threads import torch_threads
from . import common
from .common import check_targets

name = "torch"

# The fused modules, by the name the cell table maps a cell to; cells with no PyTorch module
# run as this backend's own modules (CUSTOM), which hold the canonical W, U, b directly.
BUILTINS = {
    "nn.RNN": lambda i, h, n: nn.RNN(i, h, n, nonlinearity="tanh", batch_first=True),
    "nn.GRU": lambda i, h, n: nn.GRU(i, h, n, batch_first=True),
    "nn.LSTM": lambda i, h, n: nn.LSTM(i, h, n, batch_first=True),
}


def device_name(requested: str, cuda_devices: int, local_rank: int | None) -> str:
    """The torch device for ``--device requested`` when ``cuda_devices`` GPUs are visible;
    ``local_rank`` is this process's LOCAL_RANK under torchrun (None otherwise), whose GPU it takes."""
    if requested == "cpu" or (requested == "auto" and cuda_devices == 0):
        return "cpu"
    if cuda_devices == 0:
        raise UserError(
            f"--device {requested}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device cpu or auto"
        )
    if local_rank is None:
        index = int(requested.partition(":")[2] or 0)
    elif ":" in requested:
        raise UserError(
            f"--device {requested}: under torchrun each process takes the GPU of its LOCAL_RANK; "
            "pass --device cuda (or auto)"
        )
    else:
        index = local_rank
    if index >= cuda_devices:
        raise UserError(
            f"--device {requested}: GPU {index} does not exist here ({cuda_devices} visible)"
            + ("; start at most that many processes per machine" if local_rank is not None else "")
        )
    return f"cuda:{index}"


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """``device_name`` for this process.  On a GPU, float32 stays float32 (TF32 off for matmuls and
    cuDNN's RNNs), so a GPU run computes what the other backends compute."""
    if isinstance(requested, torch.device):
        return requested
    local_rank = launch_local_rank()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.device(device_name(requested, count, local_rank))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class ChoGRU(nn.Module):
    """One Cho GRU layer (reset before the recurrent matmul), parameters in the canonical layout."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(input_size, 3 * hidden_size))
        self.U = nn.Parameter(torch.empty(hidden_size, 3 * hidden_size))
        self.b = nn.Parameter(torch.empty(3 * hidden_size))

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        """x ``[B, T, in]``, h ``[B, H]`` -> (outputs ``[B, T, H]``, final h ``[B, H]``)."""
        H = self.U.shape[0]
        A = x @ self.W + self.b  # [B, T, 3H]: the input side of every step at once
        U_rz, U_n = self.U[:, : 2 * H], self.U[:, 2 * H :]
        outs = []
        for t in range(A.shape[1]):
            a = A[:, t]
            rz = torch.sigmoid(a[:, : 2 * H] + h @ U_rz)
            r, z = rz[:, :H], rz[:, H:]
            n = torch.tanh(a[:, 2 * H :] + (r * h) @ U_n)
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs, dim=1), h


class _LinearScan(torch.autograd.Function):
    """h_t = a_t * h_{t-1} + b_t over dim 1 of ``a``, ``b`` [B, T, H] from ``h0`` [B, H], with the
    backward pass written out (the reverse recurrence dh_t = g_t + a_{t+1} dh_{t+1}), so autograd
    records two tensors instead of a graph node per step."""

    @staticmethod
    def forward(ctx, a, b, h0):
        out = torch.empty_like(b)
        h = h0
        for t in range(a.shape[1]):
            h = torch.addcmul(b[:, t], a[:, t], h)
            out[:, t] = h
        ctx.save_for_backward(a, h0, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a, h0, out = ctx.saved_tensors
        dh = torch.empty_like(grad_out)
        acc = grad_out[:, -1]
        dh[:, -1] = acc
        for t in range(a.shape[1] - 2, -1, -1):
            acc = torch.addcmul(grad_out[:, t], a[:, t + 1], acc)
            dh[:, t] = acc
        h_prev = torch.cat([h0[:, None], out[:, :-1]], dim=1)
        return dh * h_prev, dh, a[:, 0] * dh[:, 0]


class ParallelCell(nn.Module):
    """One layer of a parallel-scan cell (minGRU / minLSTM, Feng et al. 2024), canonical W and b:
    every gate of the sequence from one GEMM, then the linear recurrence as a scan."""

    def __init__(self, cell: str, input_size: int, hidden_size: int):
        super().__init__()
        row = cell_info(cell)
        self.scan, self.linear = row.scan, row.linear_candidate
        self.W = nn.Parameter(torch.empty(input_size, row.gates * hidden_size))
        self.b = nn.Parameter(torch.empty(row.gates * hidden_size))

    def _candidate(self, x):
        return x if self.linear else torch.where(x >= 0, x + 0.5, torch.sigmoid(x))

    def forward(self, x: torch.Tensor, h: torch.Tensor):
        """x ``[B, T, in]``, h ``[B, H]`` -> (outputs ``[B, T, H]``, final h ``[B, H]``)."""
        A = x @ self.W + self.b
        H = h.shape[-1]
        if self.scan == "update":  # minGRU: a = 1 - z, b = z h~
            z = torch.sigmoid(A[..., :H])
            a, b = 1.0 - z, z * self._candidate(A[..., H:])
        else:
            f, i = torch.sigmoid(A[..., :H]), torch.sigmoid(A[..., H : 2 * H])
            total = f + i
            a, b = f / total, i / total * self._candidate(A[..., 2 * H :])
        out = _LinearScan.apply(a, b, h)
        return out, out[:, -1]


# Cells with no PyTorch module (see the cell table), as modules of this backend: one layer each.
CUSTOM = {
    "gru": ChoGRU,
    **{c.name: partial(ParallelCell, c.name) for c in CELL_TABLE.values() if c.parallel},
}


class TorchModel(nn.Module):
    """Input stage (one-hot, embedding or Dense-ReLU), the recurrent layers, a linear readout.

    Each recurrent layer is its own module (a one-layer fused built-in where the cell has one),
    so dropout masks drawn by ``rnnlab.dropout`` can act between layers."""

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__()
        self.spec = spec
        H = spec.hidden_size
        if spec.input_kind == "dense_relu":
            self.input = nn.Linear(spec.input_size, H)
        if spec.input_kind == "embedding":
            self.embed = nn.Embedding(spec.input_size, spec.embed_size)
        self.custom = spec.cell in CUSTOM
        make = CUSTOM[spec.cell] if self.custom else (lambda i, h: BUILTINS[spec.cell_info.torch_module](i, h, 1))
        self.layers = nn.ModuleList([make(layer_input_size(spec, k), H) for k in range(spec.num_layers)])
        # RMS norm gains: what layer k reads, and what the readout reads (``rnnlab.cells``)
        self.norms = nn.ParameterDict(
            {
                str(k): nn.Parameter(torch.empty(layer_input_size(spec, k)))
                for k in range(spec.num_layers)
                if has_norm(spec, k)
            }
        )
        if spec.norm != "none":
            self.norms["readout"] = nn.Parameter(torch.empty(H))
        self.readout = nn.Linear(H, spec.output_size)
        if spec.decodes:
            position, channel = decoder_widths(spec)
            self.position = nn.Parameter(torch.empty(spec.decode_steps, position))
            self.channel = nn.Parameter(torch.empty(spec.decode_channels, channel))
        if spec.tie_weights:  # one tensor: the embedding table is the readout's (O, H) weight
            self.readout.weight = self.embed.weight
        self.to(device=torch.device(device), dtype=TORCH_DTYPES[params_dtype(params)])
        self.load_canonical(params)

    # ------------------------------------------------------------------ canonical <-> torch layout
    def _pairs(self):
        """(canonical name, torch tensor, transposed?) for every canonical parameter."""
        spec, out = self.spec, []
        if spec.input_kind == "embedding":
            out.append(("embed.W", self.embed.weight, False))
        if spec.input_kind == "dense_relu":
            out += [("input.W", self.input.weight, True), ("input.b", self.input.bias, False)]
        torch_names = {
            "W": ("weight_ih_l0", True),
            "U": ("weight_hh_l0", True),
            "b": ("bias_ih_l0", False),
            "b_U": ("bias_hh_l0", False),
        }
        for k, layer in enumerate(self.layers):
            for name in spec.cell_info.layer_params:
                attr, transposed = (name, False) if self.custom else torch_names[name]
                out.append((f"layers.{k}.{name}", getattr(layer, attr), transposed))
            if str(k) in self.norms:
                out.append((f"layers.{k}.norm", self.norms[str(k)], False))
        if "readout" in self.norms:
            out.append(("readout.norm", self.norms["readout"], False))
        if not spec.tie_weights:
            out.append(("readout.W", self.readout.weight, True))
        out.append(("readout.b", self.readout.bias, False))
        if spec.decodes:
            out += [("decoder.position", self.position, False), ("decoder.channel", self.channel, False)]
        return out

    @torch.no_grad()
    def load_canonical(self, params: dict[str, np.ndarray]) -> None:
        for key, tensor, transposed in self._pairs():
            value = torch.as_tensor(np.asarray(params[key]))
            tensor.copy_(value.T if transposed else value)
        if not self.custom and "b_U" not in self.spec.cell_info.layer_params:
            for layer in self.layers:  # one canonical bias: the built-in's second one stays 0
                layer.bias_hh_l0.zero_()
                layer.bias_hh_l0.requires_grad_(False)

    def canonical(self) -> dict[str, np.ndarray]:
        return {key: _numpy(t.T if tr else t) for key, t, tr in self._pairs()}

    def canonical_grads(self) -> dict[str, np.ndarray]:
        return {key: _numpy(t.grad.T if tr else t.grad) for key, t, tr in self._pairs()}

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, carry: list, masks: dict | None = None):
        """x: ``[B, T]`` ids or ``[B, T, F]``; carry: per layer ``[B, H]`` (``(h, c)`` for LSTM);
        masks: batch-first dropout masks (``rnnlab.dropout``) or None.
        Returns outputs ``[B, T, O]`` and the new carry in the same form."""
        spec, masks = self.spec, masks or {}
        if spec.input_kind == "onehot":
            # The built-ins multiply by their input weights, so ids enter as one-hot rows
            # (the same product as the NumPy backend's row gather).
            x = F.one_hot(x, spec.input_size).to(self.readout.bias.dtype)
        elif spec.input_kind == "embedding":
            x = self.embed(x)
        elif spec.input_kind == "dense_relu":
            x = torch.relu(self.input(x))
        x, new_carry = self._stack(x, carry, masks)
        if spec.decodes:
            x = self._decode(new_carry)
        if "readout" in self.norms:
            x = _rms_norm(x, self.norms["readout"])
        if "readout" in masks:
            x = x * masks["readout"]
        return self.readout(x), new_carry

    def _stack(self, x: torch.Tensor, carry: list, masks: dict):
        """The recurrent layers over batch-first ``x`` (what layer 0 reads): (top stream, new carry)."""
        spec, new_carry = self.spec, []
        for k, layer in enumerate(self.layers):
            read = _rms_norm(x, self.norms[str(k)]) if str(k) in self.norms else x
            if f"layers.{k}" in masks:
                read = read * masks[f"layers.{k}"]
            if self.custom:
                out, c = layer(read, carry[k])
            elif len(spec.cell_info.carry) == 2:  # (h, c), as nn.LSTM takes it
                out, (h_n, c_n) = layer(read, (carry[k][0][None], carry[k][1][None]))
                c = (h_n[0], c_n[0])
            else:
                out, h_n = layer(read, carry[k][None])
                c = h_n[0]
            new_carry.append(c)
            x = out + x if has_residual(spec, k) else out
        return x, new_carry

    def _decode(self, carry: list) -> torch.Tensor:
        """A segment decoder's step from the encoder's final ``carry`` (rows B): top stream
        ``[B, M, H]``.  Decoder row m * B + r starts from row r and reads position m joined to
        channel r % C (the order of every backend, so dropout masks and sums agree)."""
        M, C = self.spec.decode_steps, self.spec.decode_channels
        rows = hidden(carry[0]).shape[0]
        inputs = torch.cat([self.position.repeat_interleave(rows, dim=0), self.channel.repeat(M * rows // C, 1)], dim=1)
        start = map_arrays(lambda a: a.repeat(M, 1), carry)
        top, _ = self._stack(inputs[:, None], start, {})
        return top[:, 0].reshape(M, rows, -1).transpose(0, 1)


def _rms_norm(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + RMS_EPS) * gain


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _carry_in(carry: list, device) -> list:
    return map_arrays(lambda a: torch.as_tensor(np.asarray(a), device=device), carry)


def _carry_out(carry: list) -> list:
    return map_arrays(_numpy, carry)


def _inputs(spec: ModelSpec, inputs, dtype, device) -> torch.Tensor:
    inputs = np.asarray(inputs)
    return torch.as_tensor(
        inputs.astype(np.int64) if spec.input_kind in ID_INPUTS else inputs.astype(dtype), device=device
    )


def _masks_in(masks: dict | None, device) -> dict | None:
    return None if masks is None else {k: torch.as_tensor(m, device=device) for k, m in masks.items()}


def _loss(Y: torch.Tensor, targets: np.ndarray, loss: str) -> torch.Tensor:
    """Mean loss per output element; ``targets`` already checked by ``check_targets``."""
    if loss == "cross_entropy":
        ids = torch.as_tensor(targets.astype(np.int64), device=Y.device)
        return F.cross_entropy(Y.reshape(-1, Y.shape[-1]), ids.reshape(-1))
    scored = targets.shape[1]  # targets cover the last T' outputs (see check_targets)
    wanted = torch.as_tensor(targets.astype(_np_dtype(Y)), device=Y.device)
    tail = Y[:, Y.shape[1] - scored :]
    if loss == "gaussian_nll":  # outputs (mean, log-variance)
        residual, log_var = wanted[..., 0] - tail[..., 0], tail[..., 1]
        return torch.mean(0.5 * (log_var + residual**2 * torch.exp(-log_var))) + common.HALF_LOG_2PI
    if loss == "mae":
        return torch.mean(torch.abs(tail - wanted))
    return torch.mean((tail - wanted) ** 2)


def _np_dtype(t: torch.Tensor):
    return np.float64 if t.dtype == torch.float64 else np.float32


def init_carry(spec: ModelSpec, batch_size: int, dtype=np.float32) -> list:
    return common.init_carry(spec, batch_size, dtype)


def forward(params: dict, spec: ModelSpec, carry: list, inputs: np.ndarray, device: str = "auto"):
    """Outputs ``[B, T, O]`` (NumPy) and the carry after the last step."""
    device = resolve_device(device)
    model = TorchModel(spec, params, device)
    dtype = params_dtype(params)
    with torch.no_grad():
        Y, new_carry = model(_inputs(spec, inputs, dtype, device), _carry_in(carry, device))
    return _numpy(Y), _carry_out(new_carry)


def loss_and_grads(
    params: dict,
    spec: ModelSpec,
    carry: list,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss: str = "cross_entropy",
    reduction: str = "mean",
    masks: dict | None = None,
    device: str = "auto",
):
    """Same contract as ``numpy_backend.loss_and_grads`` (loss is the per-element mean)."""
    targets = check_targets(spec, loss, inputs, targets)
    device = resolve_device(device)
    model = TorchModel(spec, params, device)
    dtype = params_dtype(params)
    Y, new_carry = model(_inputs(spec, inputs, dtype, device), _carry_in(carry, device), _masks_in(masks, device))
    value = _loss(Y, targets, loss)
    value.backward()
    grads = model.canonical_grads()
    if reduction == "sum":
        grads = {k: v * targets.size for k, v in grads.items()}
    return float(value.detach()), grads, _carry_out(new_carry)


# --------------------------------------------------------------------------- training step


def _torch_optimizer(name: str, tensors: list, optimizer) -> torch.optim.Optimizer:
    """torch.optim with the formulas of ``rnnlab.optim``.  Adagrad: torch adds eps outside the
    square root and ours inside; starting torch's accumulator at eps with eps=0 makes
    torch compute sqrt(eps + sum g^2), which is ours exactly."""
    if name == "sgd":
        return torch.optim.SGD(tensors, lr=0.0)
    if name == "adagrad":
        return torch.optim.Adagrad(tensors, lr=0.0, eps=0.0, initial_accumulator_value=optimizer.eps)
    return torch.optim.Adam(tensors, lr=0.0, betas=(optimizer.beta1, optimizer.beta2), eps=optimizer.eps)


# Backend-free slot name -> torch state key (torch's Adagrad sum starts at eps, ours at 0).
SLOTS = {"sgd": {}, "adagrad": {"sum_sq": "sum"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}


class Trainer:
    """The torch counterpart of ``numpy_backend.Trainer``: a persistent ``TorchModel`` and a
    torch.optim optimizer; a non-finite loss or gradient leaves parameters, optimizer
    state and carry unchanged."""

    name = name

    def __init__(
        self,
        spec: ModelSpec,
        params: dict,
        optimizer,
        loss: str,
        reduction: str,
        clip: str,
        clip_value: float,
        dropout: float = 0.0,
        device: str = "auto",
    ):
        self.spec, self.optimizer, self.loss, self.reduction = spec, optimizer, loss, reduction
        self.clip, self.clip_value = clip, clip_value
        self.dropout = dropout  # the loop draws each step's masks at this rate (rnnlab.dropout)
        self.dtype = params_dtype(params)
        # One intra-op thread per CPU this process may use (not per CPU of the host) and other work
        # leaves idle, one for a small model, or what the user asked for; under torchrun each local
        # process gets its share.  Set here, when a trainer is built, not on import: importing a
        # backend changes nothing.
        processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
        torch.set_num_threads(torch_threads(processes, count_params(spec)))
        self.device = resolve_device(device)
        self.model = TorchModel(spec, params, self.device)
        self._run_model = self.model  # a DistributedDataParallel wrapper under torchrun
        self.loss_weight = 1.0  # this process's share of the batch, under torchrun
        self._pairs = self.model._pairs()
        self._torch_opt = _torch_optimizer(optimizer.name, [t for _, t, _ in self._pairs], optimizer)
        self._load_optimizer_state()

    def _load_optimizer_state(self) -> None:
        """Continue from the backend-free state (e.g. a checkpoint written by another backend)."""
        slots = SLOTS[self.optimizer.name]
        if not slots or not self.optimizer.state:
            return
        for key, tensor, transposed in self._pairs:
            st = self._torch_opt.state[tensor]
            for slot, torch_key in slots.items():
                value = torch.as_tensor(self.optimizer.state[f"{slot}/{key}"]).to(tensor.device, tensor.dtype)
                value = value.T.contiguous() if transposed else value.clone()
                if slot == "sum_sq":
                    value += self.optimizer.eps
                st[torch_key] = value
            if self.optimizer.name == "adam":
                st["step"] = torch.tensor(float(self.optimizer.step))

    def _sync_optimizer(self) -> None:
        slots = SLOTS[self.optimizer.name]
        state = {}
        for key, tensor, transposed in self._pairs:
            st = self._torch_opt.state.get(tensor, {})
            for slot, torch_key in slots.items():
                if torch_key in st:
                    value = _numpy(st[torch_key].T if transposed else st[torch_key])
                    state[f"{slot}/{key}"] = value - self.optimizer.eps if slot == "sum_sq" else value
        self.optimizer.state = state

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.model.canonical()

    def init_carry(self, batch_size: int) -> list:
        return init_carry(self.spec, batch_size, self.dtype)

    def train_step(self, carry, inputs, targets, lr: float, masks: dict | None = None):
        """(loss, grad_norm, new_carry), as the NumPy Trainer."""
        targets = check_targets(self.spec, self.loss, inputs, targets)
        self._torch_opt.zero_grad(set_to_none=False)
        Y, new_carry = self._run_model(
            _inputs(self.spec, inputs, self.dtype, self.device),
            _carry_in(carry, self.device),
            _masks_in(masks, self.device),
        )
        value = _loss(Y, targets, self.loss)
        objective = value * targets.size if self.reduction == "sum" else value
        (objective * self.loss_weight if self.loss_weight != 1.0 else objective).backward()
        tensors = [t for _, t, _ in self._pairs]
        norm = float(torch.nn.utils.get_total_norm([t.grad for t in tensors]))
        loss_value = float(value.detach())
        if not (np.isfinite(loss_value) and np.isfinite(norm)):
            return loss_value, norm if np.isfinite(loss_value) else float("nan"), carry
        if self.clip == "norm" and norm > self.clip_value:
            # The NumPy backend's formula (rnnlab.optim.clip_gradients_), so the backends agree exactly.
            scale = self.clip_value / (norm + 1e-12)
            for t in tensors:
                t.grad.mul_(scale)
        elif self.clip == "value":
            torch.nn.utils.clip_grad_value_(tensors, self.clip_value)
        for group in self._torch_opt.param_groups:
            group["lr"] = lr
        if self.optimizer.weight_decay:  # decoupled, on weight matrices only (rnnlab.optim)
            with torch.no_grad():
                for t in tensors:
                    if t.ndim == 2:
                        t.mul_(1.0 - lr * self.optimizer.weight_decay)
        self._torch_opt.step()
        self.optimizer.step += 1
        return loss_value, norm, _carry_out(new_carry)

    def distribute(self) -> None:
        """Train data-parallel in the torchrun job this process joined (``rnnlab.distributed``):
        DDP averages the gradients during ``backward``, so every process then clips with the
        global norm and takes the same step."""
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = self.device.type == "cuda"
        self._run_model = DistributedDataParallel(self.model, device_ids=[self.device] if on_gpu else None)

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace the weights' values (same names and shapes); the optimizer state stays."""
        self.model.load_canonical(params)

    def forward(self, carry, inputs):
        with torch.no_grad():
            Y, new_carry = self.model(
                _inputs(self.spec, inputs, self.dtype, self.device), _carry_in(carry, self.device)
            )
        return _numpy(Y), _carry_out(new_carry)

    def step(self, carry, x):
        Y, new_carry = self.forward(carry, np.asarray(x)[:, None])
        return new_carry, Y[:, 0]

    def state_tensors(self) -> dict[str, np.ndarray]:
        self._sync_optimizer()
        return common.state_tensors(self.params, self.optimizer)
