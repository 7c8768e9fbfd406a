"""forecast backtest: origins laid out as asked, fits that see only their past, the pooled
verdict's statistics, resuming a stopped backtest, workers, and bad input."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from test_charlm_cli import assert_user_error, params_of, run_cli

from rnnlab import backtest
from rnnlab.config import ForecastConfig
from rnnlab.data.series import split_sizes
from rnnlab.errors import UserError
from rnnlab.tasks import forecast
from rnnlab.tasks import forecast_stats as stats

SMALL = dict(backend="numpy", dtype="float64", window=6, hidden_size=4, batch_size=16, epochs=2)


def candle_frame(n_rows=1200, step_hours=2, seed=0) -> pd.DataFrame:
    """Two-hour candles with highs, lows, closes and volumes of their own."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-01", periods=n_rows, freq=pd.Timedelta(hours=step_hours), tz="UTC")
    opens = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_rows)))
    closes = opens * np.exp(rng.normal(0, 0.005, n_rows))
    highs = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0, 0.004, n_rows)))
    lows = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0, 0.004, n_rows)))
    volume = rng.uniform(1, 100, n_rows)
    return pd.DataFrame(
        {"open": opens, "high": highs, "low": lows, "close": closes, "volume": volume},
        index=pd.Index(times, name="timestamp"),
    )


def write_frame(path, frame: pd.DataFrame):
    out = frame.copy()
    out.index = out.index.strftime("%Y-%m-%d %H:%M:%S")
    out.to_csv(path)
    return str(path)


def test_origins_tile_the_end_of_the_series_and_reuse_fits():
    cfg = ForecastConfig(window=5, test_fraction=0.3)
    origins = backtest.plan_origins(100, cfg, backtest.Settings(origins=4, stride=0, retrain_every=3))
    assert [(o.first, o.end, o.fit) for o in origins] == [(72, 79, 0), (79, 86, 0), (86, 93, 0), (93, 100, 3)]
    origins = backtest.plan_origins(100, cfg, backtest.Settings(origins=2, stride=10))
    assert [(o.first, o.end) for o in origins] == [(80, 90), (90, 100)]


def test_too_many_origins_say_how_many_points_they_need():
    cfg = ForecastConfig(window=20)
    with pytest.raises(
        UserError,
        match=r"has 100 points; need at least 200 points for 3 origins 20 apart after a "
        r"first fit of 140 \(--window 20\)",
    ):
        backtest.plan_origins(100, dataclasses.replace(cfg, window=20), backtest.Settings(origins=3, stride=20))


def test_a_fit_sees_nothing_after_its_origin(tmp_path):
    """Every price from the origin's first forecast point on is changed: the fitted model,
    its scaler and MASE scale stay bit-identical, and so does the first forecast (its window
    ends before the origin)."""
    frame = candle_frame()
    cfg = ForecastConfig(csv=write_frame(tmp_path / "a.csv", frame), features="ohlcv", **SMALL)
    series = forecast.load_series(cfg)
    origin = backtest.plan_origins(len(series.prices), cfg, backtest.Settings(origins=3, stride=8))[1]
    cut = series.prices.index[origin.first]
    changed = frame.copy()
    after = changed.index >= cut
    changed.loc[after, "open"] *= 1.5
    # The bin before the origin opened before it, but its high, low, close and volume end after.
    candle_known_later = changed.index >= series.prices.index[origin.first - 1]
    changed.loc[candle_known_later, ["high", "low", "close"]] *= 1.5
    changed.loc[candle_known_later, "volume"] += 7
    other = dataclasses.replace(cfg, csv=write_frame(tmp_path / "b.csv", changed))
    records = {}
    for name, c in (("a", cfg), ("b", other)):
        records[name] = backtest.fit_group(
            "forecast", dataclasses.asdict(c), str(tmp_path / name), [dataclasses.asdict(origin)]
        )
    run_a, run_b = (tmp_path / n / origin.name for n in "ab")
    params_a, params_b = params_of(run_a, "best"), params_of(run_b, "best")
    assert params_a.keys() == params_b.keys()
    for key in params_a:
        np.testing.assert_array_equal(params_a[key], params_b[key])
    meta_a, meta_b = (json.loads((d / "best.json").read_text()) for d in (run_a, run_b))
    assert meta_a["features"] == meta_b["features"]
    fit_a, fit_b = (json.loads((d / "fit.json").read_text()) for d in (run_a, run_b))
    assert fit_a["mase_scale"] == fit_b["mase_scale"] and fit_a["fit_points"] == origin.first
    a, b = records["a"][0], records["b"][0]
    assert a["predicted"][0] == b["predicted"][0] and a["persistence"][0] == b["persistence"][0]
    assert a["actual"][0] != b["actual"][0]  # the change did reach the data


def test_a_sliding_window_fits_on_the_last_points_only(tmp_path):
    cfg = ForecastConfig(builtin_points=300, train_length=120, **SMALL)
    origin = backtest.plan_origins(300, cfg, backtest.Settings(origins=2, stride=10))[0]
    backtest.fit_group("forecast", dataclasses.asdict(cfg), str(tmp_path), [dataclasses.asdict(origin)])
    fit = json.loads((tmp_path / origin.name / "fit.json").read_text())
    prices = forecast.load_series(dataclasses.replace(cfg, train_length=0)).prices
    assert fit["fit_points"] == 120 and fit["fit_to"] == str(prices.index[origin.first - 1])
    assert fit["fit_from"] == str(prices.index[origin.first - 120])
    # MASE's scale: the in-sample persistence MAE of the fit's training part only (not its validation)
    n_train = split_sizes(120, backtest.fit_config(cfg).fractions)[0]
    past = prices.to_numpy()[origin.first - 120 : origin.first]
    assert fit["mase_scale"] == stats.persistence_scale(past[:n_train]) != stats.persistence_scale(past)


def test_diebold_mariano_and_the_long_run_variance():
    rng = np.random.default_rng(0)
    actual = 100 + np.cumsum(rng.normal(0, 1, 2000))
    last = np.concatenate([[100.0], actual[:-1]])
    same = stats.diebold_mariano(actual, last, last)
    assert same["statistic"] == 0 and same["p_value"] == 1.0
    better = stats.diebold_mariano(actual, last + 0.5 * (actual - last), last)
    assert better["statistic"] < -5 and better["p_value"] < 1e-6
    noise = stats.diebold_mariano(actual, last + rng.normal(0, 0.05, 2000), last)
    assert noise["p_value"] > 0.01  # a model that adds tiny noise is not told apart ... at this size
    d = rng.normal(size=5000)
    assert stats.long_run_variance(d, lags=0) == pytest.approx(d.var())
    correlated = np.convolve(d, np.ones(5), mode="valid")  # positively autocorrelated
    assert stats.long_run_variance(correlated, lags=10) > 3 * correlated.var()


def test_mase_is_scaled_by_in_sample_persistence():
    train = np.array([10.0, 12.0, 11.0, 14.0])  # changes 2, 1, 3: scale 2
    assert stats.persistence_scale(train) == 2.0
    row = stats.compare_with_persistence(np.array([5.0, 7.0]), np.array([6.0, 7.0]), np.array([4.0, 5.0]), 2.0)
    assert row["mase"] == 0.25 and row["persistence_mase"] == 0.75 and row["points"] == 2


def _backtest_args(out, *extra):
    return [
        "forecast",
        "backtest",
        "--backend",
        "numpy",
        "--builtin-points",
        "400",
        "--window",
        "6",
        "--hidden-size",
        "4",
        "--epochs",
        "2",
        "--origins",
        "3",
        "--stride",
        "10",
        "--out",
        out,
        "--quiet",
        *extra,
    ]


def test_cli_backtest_writes_its_files_and_resumes_keeping_finished_origins(tmp_path, capsys):
    out = tmp_path / "bt"
    code, text, err = run_cli(capsys, *_backtest_args(out))
    assert code == 0, err
    assert "pooled skill" in text and "Diebold-Mariano" in text
    for name in ("plan.json", "backtest.json", "backtest.png", "report.html"):
        assert (out / name).exists(), name
    result = json.loads((out / "backtest.json").read_text())
    assert result["origins"] == 3 and result["pooled"]["points"] == 30 and len(result["per_origin"]) == 3
    assert "Backtest" in (out / "report.html").read_text()
    # A stopped backtest: origin 2 never finished, origin 0 did.
    (out / "origin-002" / "forecasts.json").unlink()
    (out / "origin-002" / "fit.json").unlink()
    kept = (out / "origin-000" / "forecasts.json").stat().st_mtime_ns
    code, text, err = run_cli(capsys, *_backtest_args(out))
    assert code == 0, err
    assert (out / "origin-000" / "forecasts.json").stat().st_mtime_ns == kept
    assert json.loads((out / "backtest.json").read_text())["pooled"] == result["pooled"]
    # Other settings in the same directory: refused, nothing touched; --force replaces.
    line = assert_user_error(capsys, *_backtest_args(out, "--hidden-size", "5"), match="holds a backtest with other")
    assert "--hidden-size" in line and (out / "origin-000" / "forecasts.json").stat().st_mtime_ns == kept
    code, _, err = run_cli(capsys, *_backtest_args(out, "--hidden-size", "5", "--force"))
    assert code == 0, err
    assert json.loads((out / "plan.json").read_text())["config"]["hidden_size"] == 5


def test_workers_give_the_same_backtest(tmp_path, capsys):
    args = [
        "forecast",
        "backtest",
        "--backend",
        "numpy",
        "--builtin-points",
        "300",
        "--window",
        "5",
        "--hidden-size",
        "3",
        "--epochs",
        "1",
        "--origins",
        "2",
        "--stride",
        "5",
        "--quiet",
    ]
    for workers, name in ((1, "one"), (2, "two")):
        code, _, err = run_cli(capsys, *args, "--workers", workers, "--out", tmp_path / name)
        assert code == 0, err
    one, two = (json.loads((tmp_path / n / "backtest.json").read_text()) for n in ("one", "two"))
    assert one["pooled"] == two["pooled"]


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--origins", "50", "--stride", "20"], "need at least"),
        (["--stride", "0"], "--stride: expected an integer >= 1"),
        (["--retrain-every", "0"], "--retrain-every: expected an integer >= 1"),
        (["--train-length", "5"], "--train-length 5 is too short"),
    ],
)
def test_bad_backtest_flags_are_one_line_and_write_nothing(tmp_path, capsys, flags, match):
    out = tmp_path / "bt"
    assert_user_error(capsys, "forecast", "backtest", "--builtin-points", "400", "--out", out, *flags, match=match)
    assert not out.exists()


# --------------------------------------------------------------------------- candle features


def test_candle_inputs_are_the_completed_bin_before_each_step(tmp_path):
    frame = candle_frame(60)
    cfg = ForecastConfig(csv=write_frame(tmp_path / "c.csv", frame), every="6h", features="ohlcv")
    series = forecast.load_series(cfg)
    bins = frame.resample("6h", origin=frame.index[0]).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    c = series.channels
    assert c.shape == (20, 4) and (c[0] == 0).all() and c[1, 3] == 0
    for k in (1, 7, 19):
        prev = bins.iloc[k - 1]
        np.testing.assert_allclose(
            c[k, :3], np.log(prev[["high", "low", "close"]].to_numpy(float) / prev["open"]), rtol=1e-12
        )
    for k in (2, 19):
        expected = np.log1p(bins["volume"].iloc[k - 1]) - np.log1p(bins["volume"].iloc[k - 2])
        assert c[k, 3] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("target", ["levels", "returns"])
def test_candle_inputs_never_see_past_a_forecasts_decision_time(tmp_path, target):
    """The forecast of point t is made when bin t-1 opens: change every open after that moment and
    every high, low, close and volume from that bin on, and the forecast's inputs stay the same."""
    frame = candle_frame(900)
    cfg = ForecastConfig(csv=write_frame(tmp_path / "a.csv", frame), features="ohlcv", window=6, target=target)
    series = forecast.load_series(cfg)
    features, _ = forecast.build_parts(series.prices, 6, cfg.fractions, target, series.channels)

    def inputs_of(s, t):
        w = s.prices.to_numpy()[t - 6 : t][None]
        return features.inputs(w, forecast.channel_windows(s.channels, np.array([t]), 6))

    for t in (7, 40, 89):
        decided = series.prices.index[t - 1]
        changed = frame.copy()
        changed.loc[changed.index > decided, "open"] *= 2.0
        changed.loc[changed.index >= decided, ["high", "low", "close"]] *= 1.3
        changed.loc[changed.index >= decided, "volume"] *= 5
        other = forecast.load_series(dataclasses.replace(cfg, csv=write_frame(tmp_path / f"b{t}.csv", changed)))
        np.testing.assert_array_equal(inputs_of(series, t), inputs_of(other, t))
        assert not np.array_equal(inputs_of(series, t + 2), inputs_of(other, t + 2))  # the change is seen later


def test_candle_features_train_and_backtest_from_a_csv(tmp_path, capsys):
    csv = write_frame(tmp_path / "c.csv", candle_frame(1500))
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "forecast",
        "train",
        "--csv",
        csv,
        "--features",
        "ohlcv",
        "--backend",
        "numpy",
        "--window",
        "6",
        "--hidden-size",
        "4",
        "--epochs",
        "2",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    meta = json.loads((out / "best.json").read_text())
    assert meta["spec"]["input_size"] == 5 and len(meta["features"]["channel_scales"]) == 4
    code, text, err = run_cli(capsys, "forecast", "predict", "--run", out, "--json")
    assert code == 0 and json.loads(text)["forecast"] > 0, err
    code, _, err = run_cli(
        capsys,
        "forecast",
        "backtest",
        "--csv",
        csv,
        "--features",
        "ohlc",
        "--backend",
        "numpy",
        "--window",
        "6",
        "--hidden-size",
        "4",
        "--epochs",
        "1",
        "--origins",
        "2",
        "--out",
        tmp_path / "bt",
        "--quiet",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "column, value, features, match",
    [
        ("volume", "nan", "ohlcv", "line 12: volume is 'nan'"),
        ("volume", "-3", "ohlcv", "line 12: volume is -3"),
        ("high", "", "ohlc", "line 12: high is empty"),
    ],
)
def test_bad_candle_values_are_refused_only_when_used(tmp_path, capsys, column, value, features, match):
    frame = candle_frame(600).astype(object)
    frame.iloc[10, frame.columns.get_loc(column)] = value
    csv = write_frame(tmp_path / "bad.csv", frame)
    common = [
        "forecast",
        "train",
        "--csv",
        csv,
        "--backend",
        "numpy",
        "--epochs",
        "1",
        "--hidden-size",
        "3",
        "--quiet",
        "--window",
        "5",
    ]
    assert_user_error(capsys, *common, "--features", features, "--out", tmp_path / "a", match=match)
    assert not (tmp_path / "a").exists()
    code, _, err = run_cli(capsys, *common, "--features", "open", "--out", tmp_path / "b")
    assert code == 0, err


def test_feature_sets_that_the_data_cannot_supply(tmp_path, capsys):
    no_volume = candle_frame(600).drop(columns="volume")
    csv = write_frame(tmp_path / "nv.csv", no_volume)
    assert_user_error(
        capsys,
        "forecast",
        "train",
        "--csv",
        csv,
        "--features",
        "ohlcv",
        "--out",
        tmp_path / "a",
        match="has no volume column",
    )
    assert_user_error(
        capsys, "forecast", "train", "--features", "ohlc", "--out", tmp_path / "b", match="built-in has only opens"
    )
    assert_user_error(capsys, "forecast", "train", "--features", "hlc", "--out", tmp_path / "c", match="--features")


def test_backtest_with_intervals_and_shrinking(tmp_path, capsys):
    out = tmp_path / "bt"
    code, text, err = run_cli(
        capsys, *_backtest_args(out, "--head", "gaussian", "--shrink", "auto", "--target", "returns")
    )
    assert code == 0, err
    result = json.loads((out / "backtest.json").read_text())
    pooled = result["pooled"]
    for key in (
        "coverage_80",
        "coverage_95",
        "crps_skill",
        "alpha_mean",
        "alpha_zero_share",
        "ewma_random_walk_crps",
        "ewma_random_walk_coverage_80",
        "train_vol_random_walk_coverage_95",
        "train_vol_crps_skill",
    ):
        assert key in pooled, key
    assert 0 <= pooled["alpha_mean"] <= 1 and "log_return_skill_ci95" in pooled["unshrunk"]
    assert "80% interval" in text and "unshrunk, the pooled log-return skill" in text
    assert "exponentially weighted" in text
    # the per-year table splits the pooled forecasts by calendar year, with the same statistics
    years = result["per_year"]
    assert sum(row["points"] for row in years) == pooled["points"] and len(years) >= 1
    assert all("coverage_80" in row and "crps_skill" in row for row in years)
    assert "Per year" in (out / "report.html").read_text()
    assert pooled["log_return_diebold_mariano"]["lags"] == 0 and "no autocovariances" in text
    # the same finished backtest with the Newey-West variance: summarized again, nothing refitted
    fitted = (out / "origin-000" / "fit.json").stat().st_mtime_ns
    code, text, err = run_cli(
        capsys,
        *_backtest_args(out, "--head", "gaussian", "--shrink", "auto", "--target", "returns", "--dm-lags", "auto"),
    )
    assert code == 0, err
    dm = json.loads((out / "backtest.json").read_text())["pooled"]["log_return_diebold_mariano"]
    assert dm["variance"] == "newey-west" and dm["lags"] == stats.newey_west_lags(pooled["points"])
    assert f"Newey-West variance with {dm['lags']} lags" in text
    assert (out / "origin-000" / "fit.json").stat().st_mtime_ns == fitted
    assert_user_error(capsys, *_backtest_args(out, "--dm-lags", "-1"), match="--dm-lags")
    record = json.loads((out / "origin-001" / "forecasts.json").read_text())
    assert all(lo < p < hi for lo, p, hi in zip(record["low_80"], record["predicted"], record["high_80"]))


def test_binance_klines_and_headered_files_give_the_same_candle_inputs(tmp_path):
    frame = candle_frame(300)
    lines = []
    for t, row in frame.iterrows():
        ms = int(t.timestamp() * 1000)
        o, h, lo, c, v = (repr(float(x)) for x in (row.open, row.high, row.low, row.close, row.volume))
        lines.append(f"{ms},{o},{h},{lo},{c},{v},{ms + 7199999},1.0,5,0.5,0.5,0")
    binance = tmp_path / "klines.csv"
    binance.write_text("\n".join(lines) + "\n")
    headered = write_frame(tmp_path / "h.csv", frame)
    a, b = (
        forecast.load_series(ForecastConfig(csv=str(p), every="10h", features="ohlcv")) for p in (binance, headered)
    )
    np.testing.assert_array_equal(a.channels, b.channels)
    assert a.channels.shape == (60, 4) and np.abs(a.channels[2:]).min() > 0


def test_unshrunk_intervals_are_their_own(tmp_path, capsys):
    """With a shrink weight, the unshrunk forecasts' coverage and CRPS are computed around the
    unshrunk mean with their own residuals, not copied from the shrunk ones."""
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "forecast",
        "train",
        "--backend",
        "numpy",
        "--builtin-points",
        "400",
        "--window",
        "6",
        "--hidden-size",
        "4",
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
        "--quiet",
    )
    assert code == 0, err
    calibration = json.loads((out / "calibration.json").read_text())
    test = json.loads((out / "test.json").read_text())
    assert "unshrunk_coverage_80" in test and "unshrunk_crps" in test
    shrunk = test["alpha"] < 1
    assert (calibration["unshrunk_residuals"] != calibration["residuals"]) == shrunk
    assert (test["unshrunk_crps"] != test["crps"]) == shrunk


def test_without_shrinking_uses_the_unshrunk_mean_and_residuals():
    features, parts = forecast.build_parts(
        forecast.load_series(ForecastConfig(builtin_points=300)).prices, 5, (0.7, 0.15, 0.15), "returns"
    )
    w = parts["test"].price_windows[:3]
    calibration = forecast.Calibration(0.5, np.array([-1.0, 0.0, 1.0]), 3, np.array([-2.0, 0.0, 2.0]))
    f = forecast.Forecasts(w, np.full(3, 0.1), np.full(3, 0.2), np.zeros(3), features, calibration)
    raw = f.without_shrinking()
    assert raw.alpha is None and (raw.mean == 0.2).all()
    np.testing.assert_array_equal(raw.calibration.residuals, [-2.0, 0.0, 2.0])
    assert (raw.interval(0.8)[1] - raw.interval(0.8)[0] > f.interval(0.8)[1] - f.interval(0.8)[0]).all()


@pytest.mark.parametrize("where", ["between fits", "inside a fit"])
def test_sigterm_stops_a_backtest_with_the_line_and_143(where, tmp_path, capsys, monkeypatch):
    """SIGTERM (what a scheduler sends) stops a backtest as Ctrl-C does: the line saying how to
    continue, exit 143; the same command then finishes it (before: 143 and no line between fits,
    130 inside one)."""
    import os
    import signal

    out = tmp_path / "bt"
    sent = {"done": False}

    def send_once():
        if not sent["done"]:
            sent["done"] = True
            os.kill(os.getpid(), signal.SIGTERM)

    if where == "between fits":
        real = backtest._origin_record

        def record_then_signal(*args):
            result = real(*args)
            send_once()
            return result

        monkeypatch.setattr(backtest, "_origin_record", record_then_signal)
    else:
        real_next = forecast.ForecastTask.next_batch
        calls = {"n": 0}

        def next_batch_then_signal(self):
            calls["n"] += 1
            if calls["n"] == 3:
                send_once()
            return real_next(self)

        monkeypatch.setattr(forecast.ForecastTask, "next_batch", next_batch_then_signal)
    code, text, err = run_cli(capsys, *_backtest_args(out))
    monkeypatch.undo()
    assert code == 143, err
    assert "stopped with" in text and "run the same command again" in text
    code, text, err = run_cli(capsys, *_backtest_args(out))
    assert code == 0, err
    assert (out / "backtest.json").exists()
