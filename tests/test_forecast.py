"""forecast end to end: features without look-ahead, metrics against persistence, learning,
identical histories from one seed, resume, predict, and every bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from test_charlm_cli import assert_user_error, params_of, run_cli
from test_prices import candles, write_binance, write_headered

from rnnlab.config import ForecastConfig
from rnnlab.data.series import generated_prices
from rnnlab.runner import train_run
from rnnlab.tasks import forecast, forecast_model
from rnnlab.tasks import forecast_stats as stats

# Small and fast: 400 built-in points, a tiny model, a few epochs.
SMALL = [
    "--backend",
    "numpy",
    "--builtin-points",
    "400",
    "--window",
    "8",
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--quiet",
]


def series_of(values, every_hours=20):
    index = pd.date_range("2021-01-01", periods=len(values), freq=pd.Timedelta(hours=every_hours), tz="UTC")
    return pd.Series(np.asarray(values, dtype=np.float64), index=index)


@pytest.mark.parametrize("target", ["levels", "returns"])
def test_features_invert_and_both_targets_test_the_same_points(target):
    prices = generated_prices(300, seed=1)
    features, parts = forecast.build_parts(prices, 10, (0.7, 0.15, 0.15), target)
    for part in parts.values():
        # Feeding the true target back gives the true price: the scaling is exactly undone.
        np.testing.assert_allclose(features.to_prices(part.price_windows, part.targets), part.actual, rtol=1e-12)
        assert part.inputs.shape == (len(part.actual), 10 if target == "levels" else 9, 1)
    levels = forecast.build_parts(prices, 10, (0.7, 0.15, 0.15), "levels")[1]
    for name in parts:
        assert (parts[name].times == levels[name].times).all()
        np.testing.assert_array_equal(parts[name].actual, levels[name].actual)


def test_windows_stay_inside_their_part_and_the_scaler_sees_training_only():
    values = np.arange(1.0, 101.0)  # 100 points: 70 / 15 / 15
    prices = series_of(values)
    features, parts = forecast.build_parts(prices, 5, (0.7, 0.15, 0.15), "levels")
    assert features.scaler.low == 1.0 and features.scaler.high == 70.0
    assert parts["train"].actual[-1] == 70.0 and parts["val"].price_windows[0, 0] == 71.0
    assert parts["test"].price_windows[0, 0] == 86.0 and parts["test"].actual[-1] == 100.0
    # Changing validation and test prices changes nothing the model trains on.
    changed = values.copy()
    changed[70:] *= 10
    features2, parts2 = forecast.build_parts(series_of(changed), 5, (0.7, 0.15, 0.15), "levels")
    assert features2.to_dict() == features.to_dict()
    np.testing.assert_array_equal(parts2["train"].inputs, parts["train"].inputs)
    np.testing.assert_array_equal(parts2["train"].targets, parts["train"].targets)


def test_all_step_targets_are_the_next_input_and_last_is_the_window_target():
    prices = generated_prices(200, seed=2)
    for target in ("levels", "returns"):
        _, parts = forecast.build_parts(prices, 6, (0.7, 0.15, 0.15), target)
        p = parts["train"]
        every = p.sequence_targets("all")[..., 0]
        np.testing.assert_array_equal(every[:, :-1], p.inputs[:, 1:, 0])  # output t is scored on input t+1
        np.testing.assert_array_equal(every[:, -1], p.targets)
        np.testing.assert_array_equal(p.sequence_targets("last")[:, 0, 0], p.targets)


def test_returns_scale_keeps_zero_so_a_zero_output_is_persistence():
    prices = generated_prices(200, seed=3)
    features, parts = forecast.build_parts(prices, 5, (0.7, 0.15, 0.15), "returns")
    test = parts["test"]
    np.testing.assert_allclose(features.to_prices(test.price_windows, np.zeros(len(test.actual))), test.last)


def point_forecasts(part, prices, features):
    """``Forecasts`` whose point forecasts are ``prices``."""
    mean = features.targets(part.price_windows, prices)
    return forecast.Forecasts(part.price_windows, mean, mean, None, features)


def test_metrics_against_persistence():
    prices = series_of([10.0, 11, 10, 12, 12, 13, 11, 14, 15, 13] * 10)
    features, parts = forecast.build_parts(prices, 3, (0.7, 0.15, 0.15), "levels")
    test = parts["test"]
    perfect = forecast.compare(test, point_forecasts(test, test.actual.copy(), features), features)
    err = test.actual - test.last
    assert perfect["rmse"] == 0 and perfect["skill"] == 1 and perfect["direction_hit_rate"] == 1
    assert perfect["direction_call_share"] == pytest.approx(np.mean(err != 0))  # it calls every move there was
    same = forecast.compare(test, point_forecasts(test, test.last.copy(), features), features)
    assert same["skill"] == 0 and same["rmse"] == same["persistence_rmse"] > 0
    assert same["persistence_mae"] == pytest.approx(np.mean(np.abs(err)))
    assert same["persistence_mape_percent"] == pytest.approx(100 * np.mean(np.abs(err) / test.actual))
    # A forecast of no move is a no-call, not a miss: persistence calls nothing and has no hit rate.
    assert same["direction_call_share"] == 0 and np.isnan(same["direction_hit_rate"])
    assert "never called a move" in forecast.describe(same)
    # Direction is scored on the calls where the price moved: a call on a step without a move
    # (12 -> 12 here) counts neither way, and no-calls on half the moves leave the hit rate alone.
    assert np.any(err == 0)
    no_move_wrong = test.actual + (err == 0) * 1.0
    assert forecast.compare(test, point_forecasts(test, no_move_wrong, features), features)["direction_hit_rate"] == 1
    half_silent = np.where(np.arange(len(err)) % 2 == 0, test.actual, test.last)
    silent = forecast.compare(test, point_forecasts(test, half_silent, features), features)
    assert silent["direction_hit_rate"] == 1
    assert silent["direction_call_share"] == pytest.approx(np.mean((np.arange(len(err)) % 2 == 0) & (err != 0)))
    wrong_way = forecast.compare(test, point_forecasts(test, test.last - err, features), features)
    assert wrong_way["direction_hit_rate"] == 0
    worse = forecast.compare(test, point_forecasts(test, test.last - (test.actual - test.last), features), features)
    assert worse["skill"] == pytest.approx(-1.0)  # twice the error of persistence
    assert "higher RMSE than persistence" in forecast.describe(worse)


def test_train_learns_the_builtin_series_and_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "forecast", "train", "--out", out, "--epochs", "12", "--lr", "0.01", *SMALL)
    assert code == 0, err
    for name in (
        "config.toml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "best.safetensors",
        "best.json",
        "test.json",
        "loss.png",
        "forecast.png",
    ):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(0, 13))  # the untrained model, then one row per epoch
    assert rows[0]["train_loss_mean"] is None and rows[-1]["train_loss_mean"] < rows[1]["train_loss_mean"]
    test = json.loads((out / "test.json").read_text())
    assert test["model"] == "best" and test["epoch"] == min(rows, key=lambda r: r["val_loss"])["epoch"]
    # The built-in series has cycles persistence cannot follow: a trained model beats it.
    assert test["skill"] > 0.1 and test["val"]["skill"] > 0.1
    assert test["skill"] == pytest.approx(1 - test["rmse"] / test["persistence_rmse"])
    assert "skill" in stdout and "persistence" in stdout

    code, pred, _ = run_cli(capsys, "forecast", "predict", "--run", out, "--json")
    result = json.loads(pred)
    assert code == 0 and result["persistence"] == pytest.approx(generated_prices(400).iloc[-1])
    assert pd.Timestamp(result["next_time"]) - pd.Timestamp(result["last_time"]) == pd.Timedelta(hours=20)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_same_seed_same_history_and_another_seed_differs(tmp_path, capsys, backend):
    def history(name, seed):
        out = tmp_path / name
        args = ["forecast", "train", "--out", out, "--epochs", "3", "--seed", str(seed), *SMALL, "--backend", backend]
        assert run_cli(capsys, *args)[0] == 0
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [(r["epoch"], r["train_loss_mean"], r["val_loss"], r["val_rmse"]) for r in rows]

    first, again, other = history("a", 0), history("b", 0), history("c", 1)
    assert first == again and len(first) == 4
    assert first != other


@pytest.mark.parametrize("target", ["levels", "returns"])
def test_resume_continues_exactly(tmp_path, capsys, target):
    common = ["forecast", "train", *SMALL, "--target", target, "--loss-steps", "all"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_cli(capsys, *common, "--out", straight, "--epochs", "4")[0] == 0
    assert run_cli(capsys, *common, "--out", split, "--epochs", "2")[0] == 0
    assert run_cli(capsys, "forecast", "train", "--resume", "--out", split, "--epochs", "4", "--quiet")[0] == 0
    a, b = params_of(straight), params_of(split)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (
        json.loads((split / "test.json").read_text())["rmse"]
        == json.loads((straight / "test.json").read_text())["rmse"]
    )
    assert_user_error(
        capsys, "forecast", "train", "--resume", "--out", split, "--window", "9", match="cannot change --window"
    )


def test_returns_model_starts_at_persistence(tmp_path):
    cfg = ForecastConfig(
        backend="numpy", builtin_points=300, window=6, hidden_size=4, target="returns", lr=1e-12, epochs=1
    )
    summary = train_run(cfg, tmp_path / "r", quiet=True)
    assert summary["test"]["skill"] == pytest.approx(0.0, abs=1e-6)  # a zero readout forecasts the last price
    first = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["epoch"] == 0 and first["val_skill"] == 0.0  # epoch 0 is persistence exactly


def test_skill_interval_brackets_the_skill_and_narrows_with_more_points():
    rng = np.random.default_rng(0)

    def interval(n):
        actual = 100 + np.cumsum(rng.normal(size=n + 1))
        last, actual = actual[:-1], actual[1:]
        predicted = last + 0.3 * (actual - last) + rng.normal(0, 0.3, n)
        skill = 1 - np.sqrt(np.mean((predicted - actual) ** 2) / np.mean((last - actual) ** 2))
        lo, hi = stats.skill_interval(actual, predicted, last)
        assert lo < skill < hi
        return hi - lo

    assert interval(4000) < 0.5 * interval(100)


def test_csv_run_and_predict_on_a_newer_file(tmp_path, capsys):
    times, opens = candles(400, step_hours=1, seed=4)
    train_csv = write_binance(tmp_path / "train.csv", times[:300], opens[:300])
    new_csv = write_headered(tmp_path / "new.csv", times[250:], opens[250:])
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys,
        "forecast",
        "train",
        "--csv",
        train_csv,
        "--every",
        "2h",
        "--out",
        out,
        "--epochs",
        "2",
        *[a for a in SMALL if a != "--quiet"],
    )
    assert code == 0, err
    assert "150 points every 2h" in stdout
    code, pred, err = run_cli(capsys, "forecast", "predict", "--run", out, "--csv", new_csv, "--json")
    assert code == 0, err
    result = json.loads(pred)
    # The new file is binned on the run's 2-hour grid: its last bin starts at an even hour.
    assert pd.Timestamp(result["last_time"]) == times[398] and result["last_price"] == pytest.approx(opens[398])
    loaded = forecast.load_run(out)
    trainer, features = loaded.trainer, loaded.extras["features"]
    window = opens[250::2][-8:][None]  # hours 384, 386, ..., 398
    expected = features.to_prices(
        window, forecast.forecast_outputs(trainer, features.inputs(window).astype(np.float32))
    )
    assert result["forecast"] == pytest.approx(expected[0], rel=1e-6)


def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_ROWS = "".join(f"2021-01-01 {h:02d}:00:00,{100 + h},1,1,1,1\n" for h in range(24))


@pytest.mark.parametrize(
    "content,match",
    [
        ("timestamp,high,low\n2021-01-01,1,1\n", "open"),
        ("timestamp,open,high,low,close,volume\nyesterday,1,1,1,1,1\n" + GOOD_ROWS, "line 2"),
        ("timestamp,open,high,low,close,volume\n" + GOOD_ROWS + "2021-01-02 00:00:00,nan,1,1,1,1\n", "line 26"),
        ("timestamp,open,high,low,close,volume\n" + GOOD_ROWS + "2021-01-02 00:00:00,inf,1,1,1,1\n", "line 26"),
        ("timestamp,open,high,low,close,volume\n" + GOOD_ROWS + "2021-01-02 00:00:00,-5,1,1,1,1\n", "line 26"),
        ("timestamp,open,high,low,close,volume\n" + GOOD_ROWS + "2021-01-02 00:00:00,0,1,1,1,1\n", "positive"),
        ("timestamp,open,high,low,close,volume\n" + GOOD_ROWS, "need at least"),
    ],
)
def test_bad_csv_is_one_line_and_exit_2(tmp_path, capsys, content, match):
    path = _csv(tmp_path, content)
    assert_user_error(
        capsys,
        "forecast",
        "train",
        "--csv",
        path,
        "--every",
        "1h",
        "--window",
        "5",
        "--out",
        tmp_path / "run",
        match=match,
    )


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--csv", "/nonexistent/prices.csv"], "does not exist"),
        (["--window", "0"], "--window"),
        (["--window", "-3"], "--window"),
        (["--window", "1", "--target", "returns"], "--window 2"),
        (["--every", "0h"], "--every"),
        (["--every", "soon"], "--every"),
        (["--start", "2021-02-01", "--end", "2021-01-01"], "--end"),
        (["--epochs", "0"], "--epochs"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--val-fraction", "0.5", "--test-fraction", "0.45"], "less than 10%"),
        (["--target", "prices"], "--target"),
        (["--builtin-points", "30", "--window", "20"], "need at least"),
        (["--lr", "nan"], "--lr"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, match):
    assert_user_error(capsys, "forecast", "train", "--backend", "numpy", "--out", tmp_path / "run", *flags, match=match)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("window", 0, "--window"),
        ("target", '"prices"', "--target"),
        ("csv", 3, "--csv"),
        ("val_fraction", 0.0, "--val-fraction"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path, capsys, key, value, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"{key} = {value}\n")
    assert_user_error(capsys, "forecast", "train", "--config", cfg, "--out", tmp_path / "run", match=match)


def test_predict_needs_a_whole_window_and_a_forecast_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "forecast", "train", "--out", out, "--epochs", "1", *SMALL)[0] == 0

    def rows(name, hours, count, offset_hours=0):
        times = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(count) * hours + offset_hours, unit="h")
        return _csv(tmp_path, "timestamp,open\n" + "".join(f"{t},{100 + i}\n" for i, t in enumerate(times)), name)

    assert_user_error(
        capsys, "forecast", "predict", "--run", out, "--csv", rows("short.csv", 20, 3), match="window of 8"
    )
    # Files that cannot be put on the run's 20-hour grid, anchored at 2020-01-01 00:00.
    assert_user_error(
        capsys,
        "forecast",
        "predict",
        "--run",
        out,
        "--csv",
        rows("daily.csv", 24, 30),
        match="24-hour candles, longer than the run's --every 20h",
    )
    assert_user_error(
        capsys,
        "forecast",
        "predict",
        "--run",
        out,
        "--csv",
        rows("3h.csv", 3, 300),
        match="--every 20h is not a whole number of",
    )
    assert_user_error(
        capsys,
        "forecast",
        "predict",
        "--run",
        out,
        "--csv",
        rows("off.csv", 2, 300, 1),
        match="1-hour off the run's bin grid",
    )
    # --start/--end pick the window: the forecast is of the bin after the last one before --end.
    code, text, _ = run_cli(
        capsys, "forecast", "predict", "--run", out, "--csv", rows("ok.csv", 2, 600), "--end", "2020-01-30", "--json"
    )
    assert code == 0 and json.loads(text)["next_time"] == "2020-01-30 04:00:00+00:00", text
    assert_user_error(capsys, "charlm", "sample", "--run", out, match="not charlm")
    assert_user_error(capsys, "forecast", "predict", "--run", tmp_path / "nothing", match="nothing")


def test_stock_dataset_is_what_the_task_trains_on():
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from rnnlab.data.torch_dataset import StockDataset

    prices = generated_prices(300, seed=5)
    datasets = StockDataset.splits(prices, 10)
    _, parts = forecast.build_parts(prices, 10, (0.7, 0.15, 0.15), "levels")
    for name, dataset in datasets.items():
        x, y = next(iter(DataLoader(dataset, batch_size=len(dataset))))
        np.testing.assert_allclose(x.numpy(), parts[name].inputs, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(y.numpy()[:, 0], parts[name].targets, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "backend, head", [("jax", "point"), ("torch", "point"), ("jax", "gaussian"), ("torch", "gaussian")]
)
def test_every_backend_trains_the_same_forecaster_in_float64(tmp_path, capsys, backend, head):
    pytest.importorskip(backend)
    common = [
        "forecast",
        "train",
        *SMALL,
        "--epochs",
        "2",
        "--dtype",
        "float64",
        "--cell",
        "gru_reset_after",
        "--head",
        head,
        "--target",
        "returns",
    ]
    assert run_cli(capsys, *common, "--out", tmp_path / "numpy")[0] == 0
    assert run_cli(capsys, *common, "--backend", backend, "--out", tmp_path / backend)[0] == 0
    a, b = params_of(tmp_path / "numpy"), params_of(tmp_path / backend)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-8, atol=1e-10, err_msg=k)


def test_config_file_reproduces_run(tmp_path, capsys):
    """config.toml holds every setting, so training from it repeats the run bit for bit."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(capsys, "forecast", "train", "--out", a, "--epochs", "2", "--target", "returns", *SMALL)[0] == 0
    assert run_cli(capsys, "forecast", "train", "--config", a / "config.toml", "--out", b, "--quiet")[0] == 0
    from safetensors.numpy import load_file

    pa, pb = load_file(str(a / "best.safetensors")), load_file(str(b / "best.safetensors"))
    assert pa.keys() == pb.keys() and all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert json.loads((a / "test.json").read_text())["rmse"] == json.loads((b / "test.json").read_text())["rmse"]


def test_the_returns_scaler_is_fitted_on_the_training_part_only():
    values = generated_prices(200, seed=4).to_numpy()
    n_train = 140  # 70% of 200
    features, parts = forecast.build_parts(series_of(values), 5, (0.7, 0.15, 0.15), "returns")
    train_returns = np.diff(np.log(values[:n_train]))
    assert features.scaler.scale == pytest.approx(np.sqrt(np.mean(train_returns**2)), rel=1e-12)
    # Wild validation and test prices (a crash, then a rally) change nothing fitted.
    changed = values.copy()
    changed[n_train:] *= np.exp(np.linspace(-1.0, 2.0, len(values) - n_train))
    features2, parts2 = forecast.build_parts(series_of(changed), 5, (0.7, 0.15, 0.15), "returns")
    assert features2.to_dict() == features.to_dict()
    np.testing.assert_array_equal(parts2["train"].inputs, parts["train"].inputs)


def test_mae_skill_and_rmse_skill_are_each_against_their_own_persistence_error():
    prices = series_of(100 + np.cumsum(np.random.default_rng(5).normal(size=200)))
    features, parts = forecast.build_parts(prices, 4, (0.7, 0.15, 0.15), "levels")
    test = parts["test"]
    predicted = test.last + 0.5 * (test.actual - test.last) + np.linspace(-0.8, 0.8, len(test.actual))
    result = forecast.compare(test, point_forecasts(test, predicted, features), features)
    model_err, persistence_err = predicted - test.actual, test.last - test.actual
    assert result["mae_skill"] == pytest.approx(1 - np.mean(np.abs(model_err)) / np.mean(np.abs(persistence_err)))
    assert result["skill"] == pytest.approx(1 - np.sqrt(np.mean(model_err**2) / np.mean(persistence_err**2)))
    assert result["mae_skill"] != pytest.approx(result["skill"], abs=1e-3)


def _iid_bootstrap_interval(actual, predicted, last, draws=4000, seed=1):
    """An independent 95% percentile interval from resampling single points."""
    idx = np.random.default_rng(seed).integers(0, len(actual), (draws, len(actual)))
    m, p = (predicted - actual) ** 2, (last - actual) ** 2
    skills = 1 - np.sqrt(m[idx].mean(axis=1) / p[idx].mean(axis=1))
    return np.percentile(skills, [2.5, 97.5])


def test_the_skill_interval_is_a_95_percent_one_and_widens_for_correlated_errors():
    rng = np.random.default_rng(6)
    n = 2000
    last = 100 + np.cumsum(rng.normal(size=n))
    actual = last + rng.normal(size=n)
    # Independent errors: with blocks of one, the interval is the plain 95% bootstrap one.
    predicted = last + 0.4 * (actual - last) + rng.normal(0, 0.5, n)
    lo, hi = stats.skill_interval(actual, predicted, last, block=1, draws=4000)
    ref_lo, ref_hi = _iid_bootstrap_interval(actual, predicted, last)
    assert (hi - lo) == pytest.approx(ref_hi - ref_lo, rel=0.15)
    # Errors that come in runs of 50: blocks keep the runs together, so the interval is wider
    # than single-point resampling, which would understate the uncertainty.
    runs = np.repeat(rng.normal(0, 1.5, n // 50), 50)
    predicted = last + 0.4 * (actual - last) + runs
    lo, hi = stats.skill_interval(actual, predicted, last, block=50, draws=2000)
    ref_lo, ref_hi = _iid_bootstrap_interval(actual, predicted, last)
    assert hi - lo > 2 * (ref_hi - ref_lo)


# --------------------------------------------------------------------------- intervals and shrinking


def test_gaussian_forecasts_cover_as_stated_when_the_model_is_right():
    """Forecasts whose distribution is the one the data came from: 80% and 95% intervals cover
    80% and 95%, and CRPS equals the normal distribution's closed form (levels and returns)."""
    from statistics import NormalDist

    rng = np.random.default_rng(0)
    n, sigma = 20000, 0.3
    prices = series_of(100 + np.cumsum(rng.normal(0, 1, 400)) * 0.1 + 50)
    for target in ("levels", "returns"):
        features, parts = forecast.build_parts(prices, 4, (0.7, 0.15, 0.15), target)
        w = np.repeat(parts["test"].price_windows[:1], n, axis=0)
        mean = rng.normal(0, 0.2, n)
        actual = features.to_prices(w, mean + sigma * rng.standard_normal(n))
        f = forecast.Forecasts(w, mean, mean, np.full(n, np.log(sigma**2)), features)
        metrics = f.probabilistic_metrics(actual)
        assert metrics["coverage_80"] == pytest.approx(0.8, abs=0.01)
        assert metrics["coverage_95"] == pytest.approx(0.95, abs=0.006)
        low, high = f.interval(0.8)
        assert (low < f.point).all() and (f.point < high).all()
        if target == "levels":  # prices are a linear map of the model's units: CRPS scales with it
            scale = (features.scaler.high - features.scaler.low) / 2
            z = (features.targets(w, actual) - mean) / sigma
            unit = NormalDist()
            exact = (
                sigma
                * scale
                * np.mean([zz * (2 * unit.cdf(zz) - 1) + 2 * unit.pdf(zz) - 1 / np.sqrt(np.pi) for zz in z])
            )
            assert metrics["crps"] == pytest.approx(exact, rel=2e-3)


def test_calibrated_intervals_keep_heavy_tails_that_normal_ones_miss():
    """Errors from a Student-t with 3 degrees of freedom, scaled to unit variance: normal 80%
    intervals of the right variance cover too much; intervals from the quantiles of residuals
    seen before (another sample) cover 80%."""
    rng = np.random.default_rng(2)
    n = 40000
    prices = series_of(np.linspace(100, 120, 200))
    features, parts = forecast.build_parts(prices, 4, (0.7, 0.15, 0.15), "levels")
    w = np.repeat(parts["test"].price_windows[:1], n, axis=0)
    t3 = rng.standard_t(3, size=(2, n)) / np.sqrt(3.0)  # variance 1
    mean, log_var = np.zeros(n), np.zeros(n)
    actual = features.to_prices(w, t3[0])
    normal = forecast.Forecasts(w, mean, mean, log_var, features).probabilistic_metrics(actual)
    calibration = forecast.Calibration(None, np.sort(t3[1]), n)
    calibrated = forecast.Forecasts(w, mean, mean, log_var, features, calibration).probabilistic_metrics(actual)
    assert normal["coverage_80"] > 0.85
    assert calibrated["coverage_80"] == pytest.approx(0.8, abs=0.01)
    assert calibrated["coverage_95"] == pytest.approx(0.95, abs=0.006)
    assert calibrated["crps"] < normal["crps"]  # the calibrated distribution is the closer one


def test_the_shrink_weight_is_the_least_squares_one_clipped_to_0_and_1():
    rng = np.random.default_rng(1)
    persistence, targets = rng.normal(size=500), rng.normal(size=500)
    half = persistence + 2 * (targets - persistence)  # moves twice as far as it should
    assert forecast.fit_shrink(half, targets, persistence) == pytest.approx(0.5)
    assert forecast.fit_shrink(targets, targets, persistence) == pytest.approx(1.0)
    timid = persistence + 0.25 * (targets - persistence)  # the least-squares weight is 4: clipped to 1
    assert forecast.fit_shrink(timid, targets, persistence) == 1.0
    assert forecast.fit_shrink(persistence - (targets - persistence), targets, persistence) == 0.0
    assert forecast.fit_shrink(persistence, targets, persistence) == 0.0
    text = forecast.describe_shrink_and_intervals({"alpha": 0.0})
    assert "found nothing that persistence does not already know" in text[0]


def test_gaussian_head_with_shrinking_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, text, err = run_cli(
        capsys,
        "forecast",
        "train",
        *SMALL,
        "--epochs",
        "3",
        "--head",
        "gaussian",
        "--shrink",
        "auto",
        "--target",
        "returns",
        "--out",
        out,
    )
    assert code == 0, err
    test = json.loads((out / "test.json").read_text())
    for key in (
        "coverage_80",
        "coverage_95",
        "crps",
        "ewma_random_walk_crps",
        "ewma_random_walk_coverage_80",
        "crps_skill",
        "train_vol_random_walk_crps",
        "train_vol_crps_skill",
        "alpha",
        "unshrunk_skill",
        "log_return_skill",
        "log_return_skill_ci95",
        "log_return_diebold_mariano",
    ):
        assert key in test, key
    assert test["crps_skill"] == pytest.approx(1 - test["crps"] / test["ewma_random_walk_crps"])
    assert "exponentially weighted" in test["comparison_text"] and "log-returns" in test["comparison_text"]
    assert 0 <= test["alpha"] <= 1 and test["head"] == "gaussian"
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["alpha"] == test["alpha"] and len(calibration["residuals"]) == test["val"]["points"]
    assert "80% interval" in test["comparison_text"] and "alpha" in test["comparison_text"]
    code, pred, err = run_cli(capsys, "forecast", "predict", "--run", out, "--json")
    result = json.loads(pred)
    low, high = result["interval_80"]
    assert low < result["forecast"] < high and result["alpha"] == test["alpha"]
    assert result["interval_95"][0] < low and high < result["interval_95"][1]
    # the baseline's interval around the last value, from the volatility known now
    rw_low, rw_high = result["random_walk_interval_80"]
    assert rw_low < result["persistence"] < rw_high and result["ewma_volatility"] > 0
    assert np.log(rw_high / result["persistence"]) == pytest.approx(1.2815516 * result["ewma_volatility"])
    # The shrunk forecast lies between persistence and the model's own.
    lo, hi = sorted([result["persistence"], result["unshrunk_forecast"]])
    assert lo - 1e-9 <= result["forecast"] <= hi + 1e-9
    assert "interval coverage" in (out / "report.html").read_text()


def test_calibrated_residuals_are_taken_around_the_shrunk_mean(monkeypatch):
    """With --shrink auto fitting alpha < 1, the interval residuals are those of the forecast the
    user gets (persistence + alpha * (model - persistence)); the unshrunk ones are kept beside."""
    from types import SimpleNamespace

    rng = np.random.default_rng(5)
    n = 400
    persistence = rng.standard_normal(n)
    targets = persistence + 0.3 * rng.standard_normal(n)
    model = persistence + rng.standard_normal(n)  # mostly noise: the least-squares alpha is small
    log_var = np.log(rng.uniform(0.5, 2.0, n))
    monkeypatch.setattr(
        forecast_model, "make_forecasts", lambda *a: SimpleNamespace(mean=model, unshrunk_mean=model, log_var=log_var)
    )
    features = SimpleNamespace(persistence=lambda windows: persistence)
    part = SimpleNamespace(price_windows=None, targets=targets, actual=np.zeros(n))
    cfg = ForecastConfig(head="gaussian", intervals="calibrated", shrink="auto")
    got = forecast.fit_calibration(cfg, None, features, part, None)
    assert 0 < got.alpha < 0.5
    shrunk = persistence + got.alpha * (model - persistence)
    np.testing.assert_allclose(got.residuals, np.sort((targets - shrunk) * np.exp(-0.5 * log_var)))
    np.testing.assert_allclose(got.unshrunk_residuals, np.sort((targets - model) * np.exp(-0.5 * log_var)))


def test_calibration_is_fitted_on_validation_not_on_test(tmp_path):
    """With validation and test parts of different sizes, the interval residuals are the best
    model's standardized errors on the validation part (recomputed here), and the shrink weight
    the least-squares one there; the test part is only scored."""
    cfg = ForecastConfig(
        backend="numpy",
        dtype="float64",
        builtin_points=400,
        window=6,
        hidden_size=4,
        epochs=3,
        head="gaussian",
        shrink="auto",
        target="returns",
        val_fraction=0.2,
        test_fraction=0.1,
    )
    train_run(cfg, tmp_path / "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "calibration.json").read_text())
    loaded = forecast.load_run(tmp_path / "run", "best", calibrated=False)
    features, parts = forecast.build_parts(forecast.load_series(cfg).prices, cfg.window, cfg.fractions, cfg.target)
    assert len(parts["val"].actual) != len(parts["test"].actual)
    fits = {
        name: forecast.fit_calibration(cfg, loaded.trainer, features, part, part.inputs) for name, part in parts.items()
    }
    assert saved["points"] == len(parts["val"].actual) == len(saved["residuals"])
    np.testing.assert_allclose(saved["residuals"], fits["val"].residuals, atol=1e-6)
    assert saved["alpha"] == pytest.approx(fits["val"].alpha, abs=1e-12)
