"""The segment decoder (SegRNN's encoder over segments and parallel multi-step decoding) on every
backend: central differences against the NumPy backward pass, the three backends equal in float64
with dropout on, and what each learned row may touch."""

import numpy as np
import pytest
from test_numpy_gradcheck import central_differences, float64_params_and_carry

from rnnlab.backends import numpy_backend as nb
from rnnlab.carry import map_arrays
from rnnlab.cells import CELLS, ModelSpec, count_params
from rnnlab.dropout import dropout_masks
from rnnlab.errors import UserError

SEGMENTS, STEPS, CHANNELS, WIDTH = 3, 4, 2, 5  # N encoder steps, M decoder rows, C channels, W values


def _problem(cell, num_layers=1, norm="none", residual=False, rows=4, seed=0):
    rng = np.random.default_rng(seed)
    spec = ModelSpec(
        cell,
        WIDTH,
        4,
        WIDTH,
        num_layers=num_layers,
        input_kind="dense_relu",
        norm=norm,
        residual=residual,
        decode_steps=STEPS,
        decode_channels=CHANNELS,
    )
    params, carry = float64_params_and_carry(spec, rows, rng)
    inputs = rng.standard_normal((rows, SEGMENTS, WIDTH))
    targets = rng.standard_normal((rows, STEPS, WIDTH))
    return spec, params, carry, inputs, targets


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers,norm,residual", [(1, "none", False), (2, "rms", True)])
def test_gradients_match_central_differences(cell, layers, norm, residual):
    spec, params, carry, inputs, targets = _problem(cell, layers, norm, residual)
    masks = dropout_masks(spec, 0.25, np.random.default_rng(5), len(inputs), SEGMENTS, np.float64)
    _, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, "mse", masks=masks)
    assert set(grads) == set(params)
    for name, p in params.items():
        numeric = central_differences(
            lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, "mse", masks=masks)[0], p
        )
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=f"{cell} {name}")


# Every cell with MSE; MAE (whose gradient is the loss's alone, the same for any cell) with two.
@pytest.mark.parametrize("cell,loss", [(c, "mse") for c in CELLS] + [("gru_reset_after", "mae"), ("lstm", "mae")])
def test_backends_equal_in_float64(cell, loss):
    from rnnlab.backends import jax_backend as jb
    from rnnlab.backends import torch_backend as tb

    spec, params, carry, inputs, targets = _problem(cell, 2, "rms", True)
    masks = dropout_masks(spec, 0.25, np.random.default_rng(5), len(inputs), SEGMENTS, np.float64)
    assert masks["readout"].shape == (len(inputs), STEPS, spec.hidden_size)
    want_loss, want_grads, want_carry = nb.loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)
    want_y = nb.forward(params, spec, carry, inputs)[0]
    assert want_y.shape == (len(inputs), STEPS, WIDTH)
    for loss_and_grads, forward in (
        (jb.loss_and_grads, jb.forward),
        (lambda *a, **k: tb.loss_and_grads(*a, **k, device="cpu"), lambda *a: tb.forward(*a, device="cpu")),
    ):
        value, grads, new_carry = loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)
        assert abs(value - want_loss) < 1e-12
        for name in params:
            np.testing.assert_allclose(np.asarray(grads[name]), want_grads[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(forward(params, spec, carry, inputs)[0]), want_y, rtol=1e-9, atol=1e-12)
        for got, want in zip(map_arrays(np.asarray, new_carry), want_carry):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12)


def test_each_learned_row_reaches_only_its_outputs():
    """Position m shapes output segment m only; channel c the rows r with r % C = c only; the rows
    of one window are computed independently of every other window's."""
    spec, params, carry, inputs, _ = _problem("gru_reset_after", rows=6)
    before = nb.forward(params, spec, carry, inputs)[0]
    changed = {k: v.copy() for k, v in params.items()}
    changed["decoder.position"][2] += 1.0
    moved = np.any(nb.forward(changed, spec, carry, inputs)[0] != before, axis=(0, 2))
    assert moved.tolist() == [m == 2 for m in range(STEPS)]
    changed = {k: v.copy() for k, v in params.items()}
    changed["decoder.channel"][1] += 1.0
    moved = np.any(nb.forward(changed, spec, carry, inputs)[0] != before, axis=(1, 2))
    assert moved.tolist() == [r % CHANNELS == 1 for r in range(6)]
    swapped = np.concatenate([inputs[2:4], inputs[0:2], inputs[4:]])  # windows 0 and 1 traded
    swapped_carry = map_arrays(lambda a: np.concatenate([a[2:4], a[0:2], a[4:]]), carry)
    after = nb.forward(params, spec, swapped_carry, swapped)[0]
    np.testing.assert_allclose(after, np.concatenate([before[2:4], before[0:2], before[4:]]), rtol=1e-12)


def test_spec_checks_and_parameter_count():
    spec, params, *_ = _problem("lstm", 2, "rms")
    assert count_params(spec) == sum(v.size for v in params.values())
    assert params["decoder.position"].shape == (STEPS, 2) and params["decoder.channel"].shape == (CHANNELS, 2)
    with pytest.raises(UserError, match="decode_steps and decode_channels"):
        ModelSpec("gru", 5, 4, 5, input_kind="dense_relu", decode_steps=3)
    with pytest.raises(UserError, match="dense_relu"):
        ModelSpec("gru", 5, 4, 5, input_kind="dense", decode_steps=3, decode_channels=1)
    with pytest.raises(ValueError, match="2 per window"):
        nb.forward(params, spec, nb.init_carry(spec, 3, np.float64), np.zeros((3, SEGMENTS, WIDTH)))


def test_mae_gradients_match_central_differences():
    spec, params, carry, inputs, targets = _problem("gru_reset_after", 2, "rms", True)
    _, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, "mae")
    for name, p in params.items():
        numeric = central_differences(lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, "mae")[0], p)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)
