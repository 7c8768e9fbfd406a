"""Dropout: masks drawn from the run's generator, gradients through them checked by finite
differences, every backend equal with the same masks, and nothing dropped at evaluation."""

import numpy as np
import pytest
from test_backends_equal import DISTINCT_CELLS, OTHER_BACKENDS, backend_module, flat, rel
from test_numpy_gradcheck import _problem, central_differences

from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import CELLS, ModelSpec
from rnnlab.dropout import dropout_masks, mask_sites
from rnnlab.optim import Optimizer

# (input kind, loss, tied): one-hot has no layer-0 mask; an embedding and a dense layer have one.
KINDS = [
    ("onehot", "cross_entropy", False),
    ("embedding", "cross_entropy", False),
    ("embedding", "cross_entropy", True),
    ("dense_relu", "mse", False),
]


def _with_masks(cell, input_kind, loss, tied, rate=0.3, **sizes):
    spec, params, carry, inputs, targets = _problem(cell, input_kind, loss, tie_weights=tied, **sizes)
    masks = dropout_masks(spec, rate, np.random.default_rng(7), inputs.shape[0], inputs.shape[1], np.float64)
    return spec, params, carry, inputs, targets, masks


def test_sites_widths_and_values():
    spec = ModelSpec("lstm", 10, 8, 10, num_layers=3, input_kind="onehot")
    assert mask_sites(spec) == {"layers.1": 8, "layers.2": 8, "readout": 8}  # a one-hot row is not dropped
    spec = ModelSpec("gru", 10, 8, 10, num_layers=2, input_kind="embedding", embed_size=5)
    assert mask_sites(spec) == {"layers.0": 5, "layers.1": 8, "readout": 8}
    rng = np.random.default_rng(0)
    masks = dropout_masks(spec, 0.25, rng, 64, 50, np.float32)
    assert masks["layers.0"].shape == (64, 50, 5) and masks["readout"].dtype == np.float32
    for m in masks.values():
        assert set(np.unique(m)) <= {0.0, np.float32(1 / 0.75)}
        assert abs((m == 0).mean() - 0.25) < 0.02  # about a quarter dropped
        assert not (m[:, 0] == m[:, 1]).all()  # a fresh mask at every time step
    assert mask_sites(spec, input_dropout=False) == {"layers.1": 8, "readout": 8}
    assert set(dropout_masks(spec, 0.25, rng, 4, 3, input_dropout=False)) == {"layers.1", "readout"}
    before = rng.bit_generator.state
    assert dropout_masks(spec, 0.0, rng, 4, 3) is None and rng.bit_generator.state == before
    with pytest.raises(ValueError):
        dropout_masks(spec, 1.0, rng, 4, 3)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("input_kind,loss,tied", KINDS)
def test_gradients_through_masks_match_central_differences(cell, input_kind, loss, tied):
    spec, params, carry, inputs, targets, masks = _with_masks(cell, input_kind, loss, tied)
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)
    assert set(grads) == set(params)
    assert value != nb.loss_and_grads(params, spec, carry, inputs, targets, loss)[0]  # the masks act
    for name, p in params.items():
        numeric = central_differences(
            lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)[0], p
        )
        err = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert err < 1e-6, f"{cell}/{input_kind}: {name} relative error {err:.2e}"


# Every input kind for a classic and a parallel cell, the embedding for every other cell.
BACKEND_CASES = [
    (cell, *kind) for cell in DISTINCT_CELLS for kind in (KINDS if cell in ("lstm", "mingru") else KINDS[1:2])
]
# ... and an embedding with no mask of its own (--no-input-dropout: NumPy folds it into W).
NO_INPUT_MASK = ("gru_reset_after", "embedding", "cross_entropy", "no input mask")


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell,input_kind,loss,tied", BACKEND_CASES + [NO_INPUT_MASK])
def test_backends_equal_numpy_with_the_same_masks(backend, cell, input_kind, loss, tied):
    other = backend_module(backend)
    spec, params, carry, inputs, targets, masks = _with_masks(cell, input_kind, loss, tied is True, B=4, T=7, H=5)
    if tied == "no input mask":
        del masks["layers.0"]
    v_np, g_np, c_np = nb.loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)
    v_o, g_o, c_o = other.loss_and_grads(params, spec, carry, inputs, targets, loss, masks=masks)
    assert v_o == pytest.approx(v_np, rel=1e-12)
    assert g_o.keys() == g_np.keys()
    for k in g_np:
        assert rel(g_o[k], g_np[k]) < 1e-9, k
    for u, v in zip(flat(c_o), flat(c_np)):
        assert rel(u, v) < 1e-9
    # Trainers: two steps with masks, then evaluation without any.
    trainers = [
        m.Trainer(
            spec,
            {k: v.copy() for k, v in params.items()},
            Optimizer("adam", weight_decay=0.1),
            loss,
            "mean",
            "norm",
            1.0,
            0.3,
        )
        for m in (nb, other)
    ]
    for t in trainers:
        c = carry
        for _ in range(2):
            _, _, c = t.train_step(c, inputs, targets, 0.01, masks)
    for k in params:
        assert rel(trainers[1].params[k], trainers[0].params[k]) < 1e-9, k
    y_np, _ = trainers[0].forward(carry, inputs)
    y_o, _ = trainers[1].forward(carry, inputs)
    assert rel(y_o, y_np) < 1e-9


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tied", [False, True])
def test_an_undropped_embedding_folds_into_the_input_weights_exactly(cell, tied):
    """With no mask on the embedding, NumPy gathers rows of embed.W @ W instead of multiplying the
    gathered embedding by W: the same loss and gradients as the unfolded path (forced here by an
    all-ones mask, which changes no value), in float64."""
    spec, params, carry, inputs, targets, masks = _with_masks(cell, "embedding", "cross_entropy", tied)
    assert "layers.0" in masks
    folded = {k: m for k, m in masks.items() if k != "layers.0"}
    unfolded = {**folded, "layers.0": np.ones_like(masks["layers.0"])}
    v_f, g_f, c_f = nb.loss_and_grads(params, spec, carry, inputs, targets, masks=folded)
    v_u, g_u, c_u = nb.loss_and_grads(params, spec, carry, inputs, targets, masks=unfolded)
    assert v_f == pytest.approx(v_u, rel=1e-13)
    assert g_f.keys() == g_u.keys() == params.keys()
    for k in g_u:
        assert rel(g_f[k], g_u[k]) < 1e-12, k
    for u, v in zip(flat(c_f), flat(c_u)):
        assert rel(u, v) < 1e-12


def test_no_input_dropout_leaves_the_first_layer_undropped_in_training(monkeypatch, tmp_path):
    """--no-input-dropout reaches the loop's masks: every step draws the readout's mask only."""
    from conftest import make_text

    from rnnlab import train
    from rnnlab.config import CharLMConfig
    from rnnlab.runner import train_run

    drawn = []

    def spy(*args, **kwargs):
        masks = dropout_masks(*args, **kwargs)
        drawn.append(sorted(masks))
        return masks

    monkeypatch.setattr(train, "dropout_masks", spy)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(2000), encoding="utf-8")
    small = dict(text=str(corpus), hidden_size=8, embed_size=4, seq_len=8, batch_size=2, max_steps=2, dropout=0.2)
    for input_dropout, sites in ((True, ["layers.0", "readout"]), (False, ["readout"])):
        drawn.clear()
        cfg = CharLMConfig(**small, input_dropout=input_dropout, eval_every=2, eval_max_chars=0, sample_length=0)
        train_run(cfg, tmp_path / str(input_dropout), quiet=True)
        assert drawn == [sites, sites]


def test_evaluation_and_sampling_use_no_dropout():
    spec, params, carry, inputs, targets, masks = _with_masks("lstm", "embedding", "cross_entropy", False)
    trainer = nb.Trainer(spec, params, Optimizer("adam"), "cross_entropy", "mean", "norm", 1.0, dropout=0.5)
    y, _ = trainer.forward(carry, inputs)
    y_plain, _ = nb.forward(params, spec, carry, inputs)
    np.testing.assert_array_equal(y, y_plain)
    _, y_step = trainer.step(carry, inputs[:, 0])
    np.testing.assert_allclose(y_step, y_plain[:, 0], rtol=1e-12)


def test_mask_mean_is_one_for_a_rate_that_does_not_divide_65536():
    """The drop probability is rounded to 1/65536; the scale follows the rounded keep probability,
    so a mask's expected value is exactly 1 (unbiased inverted dropout)."""
    spec = ModelSpec("gru", 10, 8, 10, num_layers=1, input_kind="embedding", embed_size=5)
    masks = dropout_masks(spec, 0.1, np.random.default_rng(3), 256, 64, np.float64)
    kept = masks["readout"][masks["readout"] > 0]
    assert np.allclose(kept, 65536 / (65536 - 6554))
    assert abs(masks["readout"].mean() - 1.0) < 0.01
    tiny = dropout_masks(spec, 1e-7, np.random.default_rng(3), 4, 3, np.float64)  # clamped to 1/65536
    assert np.all((tiny["readout"] == 0) | np.isclose(tiny["readout"], 65536 / 65535))


def test_raw_draws_are_the_numbers_integers_gave():
    """The masks come from the bit generator's raw words, four 16-bit draws to each: where a
    mask's size is a multiple of four (every preset's), the very numbers ``integers(0, 65536,
    dtype=uint16)`` gave before, so such runs keep their masks (this machine's byte order)."""
    spec = ModelSpec("gru", 10, 8, 10, num_layers=1, input_kind="embedding", embed_size=5)
    cut = round(0.3 * 65536)
    masks = dropout_masks(spec, 0.3, np.random.default_rng(11), 4, 7, np.float64)
    old = np.random.default_rng(11)
    for site, width in mask_sites(spec).items():
        keep = old.integers(0, 65536, (4, 7, width), dtype=np.uint16) >= cut
        np.testing.assert_array_equal(masks[site] > 0, keep, err_msg=site)
