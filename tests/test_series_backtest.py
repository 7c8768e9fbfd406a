"""Rolling-origin backtests of the series task: each fit sees only the rows before its origin, the
pooled verdict against the baselines, a stopped backtest continued, and refusals in one line."""

import dataclasses
import json

import numpy as np
import pytest

from rnnlab import backtest
from rnnlab.cli import main
from rnnlab.config import SeriesConfig
from rnnlab.data import table as tables
from rnnlab.errors import UserError
from rnnlab.tasks import series, series_backtest

SMALL = dict(lookback=24, horizon=12, segment=12, hidden_size=8, epochs=1, backend="numpy")


def _csv(path, frame):
    frame.to_csv(path, index=False)
    return str(path)


def test_a_fit_sees_nothing_after_its_origin(tmp_path):
    """Every row from the origin's first forecast point on is changed: the fitted weights, the
    scaler and the first forecast (its window ends before the origin) stay bit-identical."""
    frame = tables.builtin_frame(700)
    cfg = SeriesConfig(csv=_csv(tmp_path / "a.csv", frame), **SMALL)
    table = series.read_table(cfg)
    origin = backtest.plan_origins(
        series_backtest.forecastable(cfg, table), cfg, backtest.Settings(origins=2, stride=10)
    )[0]
    changed = frame.copy()
    changed.loc[origin.first :, ["load", "demand"]] += 5.0
    other = dataclasses.replace(cfg, csv=_csv(tmp_path / "b.csv", changed))
    records = {}
    for name, c in (("a", cfg), ("b", other)):
        records[name] = backtest.fit_group(
            "series", dataclasses.asdict(c), str(tmp_path / name), [dataclasses.asdict(origin)]
        )
    fits = {name: series.load_run(tmp_path / name / origin.name, "best") for name in "ab"}
    for key, value in fits["a"].trainer.params.items():
        np.testing.assert_array_equal(value, fits["b"].trainer.params[key])
    np.testing.assert_array_equal(fits["a"].extras["scaler"].mean, fits["b"].extras["scaler"].mean)
    first = {
        name: series.predict(f.trainer, f.extras["layout"], *_first_window(f, tmp_path / name, origin))
        for name, f in fits.items()
    }
    np.testing.assert_array_equal(first["a"], first["b"])
    a, b = records["a"][0], records["b"][0]
    assert a["mse"]["model"][0] != b["mse"]["model"][0]  # the change did reach the scored rows
    assert (
        a["fit_points"]
        == origin.first
        == json.loads((tmp_path / "a" / origin.name / "fit.json").read_text())["fit_points"]
    )


def _first_window(loaded, where, origin):
    table = series.read_table(dataclasses.replace(loaded.cfg, end=""))
    scaled = loaded.extras["scaler"].transform(table.values)
    L = loaded.extras["layout"].lookback
    return scaled[origin.first - L : origin.first][None], np.dtype("float64")


def test_a_backtest_pools_its_origins_and_continues_when_stopped(tmp_path, capsys):
    csv = _csv(tmp_path / "t.csv", tables.builtin_frame(700))
    out = tmp_path / "bt"
    args = ["series", "backtest", "--csv", csv, "--lookback", "24", "--horizon", "12", "--segment", "12"]
    args += ["--hidden-size", "8", "--epochs", "1", "--backend", "numpy", "--origins", "3", "--stride", "6"]
    assert main(args + ["--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "backtest.json").read_text())
    pooled = result["pooled"]
    assert pooled["forecasts"] == 18 and len(pooled["mse_by_step"]["model"]) == 12
    per_start = [
        m
        for o in range(3)
        for m in json.loads((out / f"origin-{o:03d}" / "forecasts.json").read_text())["mse"]["ridge"]
    ]
    assert pooled["mse"]["ridge"] == pytest.approx(np.mean(per_start), rel=1e-12)
    assert pooled["skill_vs_ridge"] == pytest.approx(1 - pooled["mse"]["model"] / pooled["mse"]["ridge"])
    assert pooled["diebold_mariano_vs_ridge"]["lags"] == 11
    for name in ("plan.json", "backtest.png", "report.html"):
        assert (out / name).stat().st_size > 0
    assert "Skill against the ridge map" in capsys.readouterr().out
    # a stopped backtest: one origin's forecasts lost; the same command makes only those again
    (out / "origin-002" / "forecasts.json").unlink()
    (out / "backtest.json").unlink()
    kept = (out / "origin-000" / "forecasts.json").stat().st_mtime_ns
    assert main(args + ["--out", str(out), "--quiet"]) == 0
    assert (out / "origin-000" / "forecasts.json").stat().st_mtime_ns == kept
    assert json.loads((out / "backtest.json").read_text())["pooled"] == pooled


def test_refusals_are_one_line(tmp_path, capsys):
    csv = _csv(tmp_path / "t.csv", tables.builtin_frame(700))
    base = ["series", "backtest", "--csv", csv, "--lookback", "24", "--horizon", "12", "--segment", "12"]
    assert main(base + ["--split", "ett-hour", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "use --split fractions" in capsys.readouterr().err
    assert main(base + ["--origins", "400", "--stride", "5", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "need at least" in err and "--lookback 24 and --horizon 12" in err and "Traceback" not in err


def test_a_run_without_a_test_part_says_so(tmp_path, capsys):
    csv = _csv(tmp_path / "t.csv", tables.builtin_frame(500))
    flags = ["--lookback", "24", "--horizon", "12", "--segment", "12", "--hidden-size", "8", "--epochs", "1"]
    run = tmp_path / "run"
    argv = ["series", "train", "--csv", csv, "--test-fraction", "0", "--backend", "numpy", "--out", str(run)]
    assert main(argv + flags + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert "reached --epochs 1 at step" in out and "no test part (--test-fraction 0); best validation MSE" in out
    assert (run / "report.html").exists() and not (run / "test.json").exists()
    with pytest.raises(UserError, match="no test windows"):
        series.evaluate_run(run)
