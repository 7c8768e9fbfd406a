"""The cell table is the one place that knows a cell: shapes, counts, carries, PyTorch mapping."""

import dataclasses

import numpy as np
import pytest

from rnnlab import cells, checkpoint, interchange
from rnnlab.backends import common
from rnnlab.cells import CELL_TABLE, CELLS, ModelSpec, count_params, init_params, param_shapes
from rnnlab.errors import UserError


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "input_kind,embed_size,tied",
    [("onehot", 0, False), ("dense_relu", 0, False), ("embedding", 4, False), ("embedding", 5, True)],
)
def test_counts_shapes_init_and_carry_agree_for_every_cell(cell, input_kind, embed_size, tied):
    spec = ModelSpec(cell, 7, 5, 7, num_layers=2, input_kind=input_kind, embed_size=embed_size, tie_weights=tied)
    shapes = param_shapes(spec)
    assert count_params(spec) == sum(int(np.prod(s)) for s in shapes.values())
    params = init_params(spec, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == shapes
    assert ("readout.W" in shapes) == (not tied) and ("embed.W" in shapes) == (input_kind == "embedding")
    carry = common.init_carry(spec, 2)
    parts = CELL_TABLE[cell].carry
    tensors = checkpoint.carry_to_tensors(carry, parts)
    assert sorted(tensors) == sorted(f"carry/{k}/{p}" for k in range(2) for p in parts)
    back = checkpoint.carry_from_tensors(tensors, 2, parts)
    assert [np.shape(c) for c in back] == [np.shape(c) for c in carry]


def test_a_cell_without_a_recurrent_matrix_can_be_expressed(monkeypatch):
    no_u = cells.Cell("gates_from_x", ("z", "h"), ("h",), ("W", "b"), None, "no recurrent matrix")
    monkeypatch.setitem(cells.CELL_TABLE, no_u.name, no_u)
    monkeypatch.setitem(cells.GATES, no_u.name, no_u.gates)
    spec = ModelSpec(no_u.name, 4, 3, 2, num_layers=2, input_kind="dense")
    shapes = param_shapes(spec)
    assert not any(name.endswith(".U") for name in shapes)
    assert shapes["layers.1.W"] == (3, 6) and count_params(spec) == sum(int(np.prod(s)) for s in shapes.values())
    cells.check_params(spec, init_params(spec, np.random.default_rng(1)))


def test_lstm_forget_bias_comes_from_the_table():
    spec = ModelSpec("lstm", 3, 4, 2)
    b = init_params(spec, np.random.default_rng(0))["layers.0.b"]
    order = CELL_TABLE["lstm"].gate_order
    f = order.index("f")
    assert np.all(b[f * 4 : (f + 1) * 4] == 1.0) and np.count_nonzero(b) == 4


def test_a_torch_state_dict_is_imported_as_the_cell_its_module_maps_to(tmp_path):
    for cell in CELLS:
        module = CELL_TABLE[cell].torch_module
        spec = ModelSpec(cell, 6, 4, 6)
        params = init_params(spec, np.random.default_rng(2))
        if module is None:
            with pytest.raises(UserError, match="no PyTorch module"):
                interchange.to_torch_state_dict(spec, params)
            continue
        state = interchange.to_torch_state_dict(spec, params)
        got, _ = interchange.from_torch_state_dict(state)
        assert got.cell == cells.cell_of_torch_module(module) == cell
    # nn.GRU's shapes are also Cho's gru's, but a state_dict of nn.GRU is never imported as gru.
    gru_state = interchange.to_torch_state_dict(
        ModelSpec("gru_reset_after", 6, 4, 6),
        init_params(ModelSpec("gru_reset_after", 6, 4, 6), np.random.default_rng(3)),
    )
    with pytest.raises(UserError, match="which is not cell 'gru'"):
        interchange.from_torch_state_dict(gru_state, cell="gru")


def test_exported_safetensors_name_their_cell(tmp_path):
    spec = ModelSpec("lstm", 6, 4, 6)
    state = interchange.to_torch_state_dict(spec, init_params(spec, np.random.default_rng(4)))
    path = interchange.save(tmp_path / "w.safetensors", state, cell="lstm")
    assert interchange.cell_named_in(path) == "lstm"
    assert interchange.cell_named_in(interchange.save(tmp_path / "w.npz", state)) is None


def test_every_row_is_consistent():
    for cell in CELL_TABLE.values():
        assert len(set(cell.gate_order)) == cell.gates
        assert cell.carry[0] == "h" and "W" in cell.layer_params and "b" in cell.layer_params
        assert (cell.torch_module is None) == bool(cell.no_torch_reason)
        assert ("torch" in cell.exports) == (cell.torch_module is not None)
        assert all(gate in cell.gate_order for gate, _ in cell.bias_init)
        assert dataclasses.replace(cell) == cell
