"""Windows, chronological splits and the train-only scaler: no look-ahead; StockDataset with a DataLoader."""

import numpy as np
import pytest

from rnnlab.data.series import MinMaxScaler, generated_prices, points_needed, split_sizes, split_windows, windows
from rnnlab.errors import UserError


def test_window_targets_are_the_value_after_the_window():
    x, y = windows(np.arange(10.0), 3)
    assert x.shape == (7, 3) and y.shape == (7,)
    np.testing.assert_array_equal(x[0], [0, 1, 2])
    np.testing.assert_array_equal(y, np.arange(3.0, 10.0))
    assert all(y[i] == x[i, -1] + 1 for i in range(7))  # X[i+L], never a value inside the window


def test_windows_never_straddle_a_split():
    values = np.arange(100.0)
    parts = split_windows(values, 5)
    n_train, n_val, n_test = split_sizes(100)
    assert (n_train, n_val, n_test) == (70, 15, 15)
    bounds = {"train": (0, 70), "val": (70, 85), "test": (85, 100)}
    for name, (x, y) in parts.items():
        lo, hi = bounds[name]
        assert x.min() >= lo and y.max() < hi and len(y) == hi - lo - 5


def test_too_few_points_says_how_many_are_needed():
    needed = points_needed(10)
    split_windows(np.arange(float(needed)), 10)  # just enough
    with pytest.raises(UserError, match=f"need at least {needed}"):
        split_windows(np.arange(float(needed - 1)), 10)
    with pytest.raises(UserError, match="--window"):
        split_windows(np.arange(50.0), 0)


def test_scaler_is_fitted_on_train_only_and_inverts():
    values = np.r_[np.linspace(10, 20, 70), np.linspace(20, 40, 30)]
    scaler = MinMaxScaler.fit(values[:70])
    assert (scaler.low, scaler.high) == (10, 20)
    scaled = scaler.transform(values)
    assert scaled[:70].min() == -1 and scaled[:70].max() == 1 and scaled[-1] == 5  # later values exceed 1
    np.testing.assert_allclose(scaler.inverse(scaled), values)
    assert MinMaxScaler.from_dict(scaler.to_dict()) == scaler
    with pytest.raises(UserError, match="constant"):
        MinMaxScaler.fit(np.ones(5))


def test_generated_prices_are_positive_seeded_and_every_20h():
    a, b = generated_prices(500, seed=1), generated_prices(500, seed=1)
    assert (a > 0).all() and a.equals(b) and not a.equals(generated_prices(500, seed=2))
    assert (a.index[1] - a.index[0]).total_seconds() == 20 * 3600 and str(a.index.tz) == "UTC"


def test_stock_dataset_with_a_plain_dataloader():
    torch = pytest.importorskip("torch")
    from rnnlab.data.torch_dataset import StockDataset

    prices = generated_prices(300, seed=0)
    sets = StockDataset.splits(prices, window=8)
    train = sets["train"]
    assert len(train) == 210 - 8 and len(sets["val"]) == 45 - 8 and len(sets["test"]) == 45 - 8
    x, y = train[0]
    assert x.shape == (8, 1) and y.shape == (1,) and x.dtype == torch.float32
    assert float(train.inputs.min()) == pytest.approx(-1) and float(train.targets.max()) <= 1 + 1e-6
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=False)
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 8, 1) and yb.shape == (16, 1)
    assert float(train.scaler.inverse(float(yb[0]))) == pytest.approx(prices.iloc[8], rel=1e-5)
    assert sets["test"].scaler is train.scaler
    with pytest.raises(UserError, match="need at least"):
        StockDataset.splits(prices[:20], window=8)
