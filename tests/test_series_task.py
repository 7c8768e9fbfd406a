"""The series task: windows into the segment decoder's rows and back, splits without look-ahead, the
baselines, a whole run on the built-in table, and bad input as one line."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnlab.cli import main
from rnnlab.config import SeriesConfig
from rnnlab.data import table as tables
from rnnlab.errors import UserError
from rnnlab.tasks import series


def _layout(targets=(0, 2), inputs_only=(1,), normalize="last", L=8, H=6, W=2):
    return series.Layout(("a", "b", "c"), targets, inputs_only, L, H, W, normalize)


def test_rows_read_each_target_with_the_input_only_columns_beside_it():
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((5, 8, 3))
    layout = _layout()
    rows, shift = layout.rows(windows, np.float64)
    assert rows.shape == (5 * 2, 4, 2 * 2)  # n*T rows, L/W segments, W values of the target and of "b"
    z = windows - windows[:, -1:, :]
    # row 2*i + j is window i's target j: its segment s holds the target's W values, then b's
    np.testing.assert_array_equal(rows[2 * 3 + 1, 1, :2], z[3, 2:4, 2])
    np.testing.assert_array_equal(rows[2 * 3 + 1, 1, 2:], z[3, 2:4, 1])
    np.testing.assert_array_equal(rows[2 * 3 + 0, 3, :2], z[3, 6:8, 0])
    assert np.all(rows[:, -1, 1] == 0) and np.all(rows[:, -1, 3] == 0)  # the last value subtracted


@pytest.mark.parametrize("normalize", ["last", "mean", "revin", "none"])
def test_targets_and_forecasts_are_inverse(normalize):
    rng = np.random.default_rng(1)
    windows, futures = rng.standard_normal((4, 8, 3)), rng.standard_normal((4, 6, 3))
    layout = _layout(normalize=normalize)
    _, shift = layout.rows(windows, np.float64)
    targets = layout.row_targets(futures, shift, np.float64)
    assert targets.shape == (4 * 2, 3, 2)
    np.testing.assert_allclose(layout.forecast(targets, shift), futures[:, :, [0, 2]], rtol=0, atol=1e-12)


def _frame(rows=600, seed=0):
    return tables.builtin_frame(rows, seed)


def test_scaler_and_baselines_see_no_later_rows(tmp_path):
    """The scaler is fitted on training rows only, and the validation baselines do not move when
    the test rows change."""
    frame = _frame()
    cfg = SeriesConfig(lookback=24, horizon=12, segment=12, season=24).validate()
    table = tables.load_table(frame)
    parts, scaler = series.split_parts(cfg, table)
    changed = frame.copy()
    changed.loc[len(frame) - 100 :, "load"] += 50.0
    parts2, scaler2 = series.split_parts(cfg, tables.load_table(changed))
    np.testing.assert_array_equal(scaler.mean, scaler2.mean)
    layout = series.layout_of(cfg, table.columns)
    base, _ = series.baseline_forecasts(cfg, layout, parts)
    base2, _ = series.baseline_forecasts(cfg, layout, parts2)
    for name in series.BASELINES:
        np.testing.assert_array_equal(base["val"][name], base2["val"][name])
    assert not np.array_equal(base["test"]["repeat_last"], base2["test"]["repeat_last"])
    # validation windows look back into the training rows, and start right after them
    n_train = int(len(frame) * cfg.fractions[0])
    assert parts["val"].first_row == n_train - cfg.lookback


def test_ridge_baseline_recovers_a_linear_law():
    """On a series whose future is a fixed linear map of its past, the ridge baseline is near exact."""
    rng = np.random.default_rng(2)
    n = 1500
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 1.6 * x[t - 1] - 0.8 * x[t - 2] + 0.01 * rng.standard_normal()
    x[:2] = 0.0
    x += np.sin(np.arange(n) / 5.0)  # excitation, so the map is identifiable
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "x": x})
    cfg = SeriesConfig(lookback=24, horizon=8, segment=8).validate()
    parts, _ = series.split_parts(cfg, tables.load_table(frame))
    layout = series.layout_of(cfg, ("x",))
    base, _ = series.baseline_forecasts(cfg, layout, parts)
    truth = parts["test"].truth(layout)
    ridge = np.mean((base["test"]["ridge"] - truth) ** 2)
    last = np.mean((base["test"]["repeat_last"] - truth) ** 2)
    assert ridge < 0.01 * last


def test_a_run_trains_tests_and_reports(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    _frame(900).to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["series", "train", "--csv", str(csv), "--targets", "load,demand", "--lookback", "24", "--horizon", "12"]
    args += ["--segment", "12", "--hidden-size", "8", "--epochs", "2", "--backend", "numpy", "--out", str(out)]
    assert main(args + ["--quiet"]) == 0
    test = json.loads((out / "test.json").read_text())
    assert set(test["errors"]) == {"model", "ridge", "seasonal_naive", "repeat_last"}
    assert len(test["errors"]["model"]["mse_by_step"]) == 12 and test["targets"] == ["load", "demand"]
    for name in ("forecast.png", "error_by_step.png", "report.html", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert "ridge" in (out / "report.html").read_text()
    capsys.readouterr()
    assert main(["series", "eval", "--run", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["errors"]["model"]["mse"] == pytest.approx(test["errors"]["model"]["mse"], rel=1e-6)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--targets", "nope"], "--targets nope: not among the columns read"),
        (["--segment", "5"], "--segment 5 does not divide --lookback 24"),
        (["--season", "48"], "--season 48 is longer than --lookback 24"),
        (["--split", "ett-hour"], "--split ett-hour needs 14,400 hourly rows"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, capsys, extra, message):
    csv = tmp_path / "t.csv"
    _frame(400).to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["series", "train", "--csv", str(csv), "--lookback", "24", "--horizon", "12", "--segment", "12"]
    assert main(args + ["--out", str(out), "--quiet"] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_short_part_names_itself():
    cfg = SeriesConfig(lookback=48, horizon=48, segment=24, test_fraction=0.05).validate()
    with pytest.raises(UserError, match="the test part has"):
        series.split_parts(cfg, tables.load_table(_frame(900)))


def test_fit_a_dataframe_then_load_and_predict(tmp_path):
    import rnnlab

    frame = _frame(700).set_index("date")
    out = tmp_path / "fit"
    settings = dict(lookback=24, horizon=12, segment=6, hidden_size=8, epochs=1, backend="numpy")
    rnnlab.fit("series", out=out, data=frame, targets=["load"], **settings)
    model = rnnlab.load(out, which="best", backend="numpy")
    assert model.spec.decode_steps == 2 and model.spec.input_size == 6 * 3  # load, then the other two
    ahead = model.predict(end="2024-01-20")
    assert ahead["origin"] == "2024-01-19 23:00:00+00:00" and len(ahead["times"]) == 12
    assert ahead["times"][0] == "2024-01-20 00:00:00+00:00" and set(ahead["forecast"]) == {"load"}
    assert ahead["repeat_last"]["load"] == [frame["load"].loc[:"2024-01-19 23:00"].iloc[-1]] * 12
    # the forecast is the model's, on the window the run's scaler made: the same as its own call
    last = model.predict()
    assert last["origin"] == str(frame.index[-1].tz_localize("UTC"))
    with pytest.raises(UserError, match="whole window at once"):
        model.step(model.reset(1), np.zeros((1, 18)))
    with pytest.raises(UserError, match="must be a pandas DataFrame"):
        rnnlab.fit("series", out=tmp_path / "bad", data=[1, 2, 3])


@pytest.mark.parametrize("normalize,cell", [("last", "gru_reset_after"), ("revin", "lstm")])
def test_onnx_takes_windows_and_gives_the_forecast_of_predict(tmp_path, normalize, cell):
    """The exported graph reads a window in the data's units ([B, L, C]) and returns what
    Model.predict returns: the scaling, the window norm, the rows and the decoder all inside."""
    ort = pytest.importorskip("onnxruntime")
    import rnnlab
    from rnnlab.onnx_export import export_run

    frame = _frame(700).set_index("date")
    out = tmp_path / "fit"
    settings = dict(lookback=24, horizon=12, segment=6, hidden_size=8, epochs=1, backend="numpy")
    rnnlab.fit("series", out=out, data=frame, targets=["demand", "load"], normalize=normalize, cell=cell, **settings)
    export_run(out, tmp_path / "m.onnx", "best")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["window"]
    ahead = rnnlab.load(out, which="best").predict(end="2024-01-20")
    window = frame.loc[:"2024-01-19 23:00", ["load", "temperature", "demand"]].to_numpy()[-24:]
    got = session.run(None, {"window": np.stack([window, window]).astype(np.float32)})
    assert len(got) == 1 and got[0].shape == (2, 12, 2)
    want = np.stack([ahead["forecast"]["demand"], ahead["forecast"]["load"]], axis=1)
    np.testing.assert_allclose(got[0][1], want, rtol=2e-5)


def test_a_bad_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    frame = _frame(300)
    frame["load"] = frame["load"].astype(object)
    frame.loc[40, "load"] = ""
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["series", "train", "--csv", str(csv), "--lookback", "24", "--horizon", "12", "--segment", "12"]
    assert main(args + ["--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 42: load is empty" in err and "Traceback" not in err
    assert not out.exists()


def test_start_end_and_train_length_cut_the_table(tmp_path):
    csv = tmp_path / "t.csv"
    tables.builtin_frame(200).to_csv(csv, index=False)
    cut = series.read_table(SeriesConfig(csv=str(csv), start="2024-01-02", end="2024-01-05T06:00"))
    assert str(cut.times[0]) == "2024-01-02 00:00:00+00:00" and str(cut.times[-1]) == "2024-01-05 05:00:00+00:00"
    assert len(cut.times) == 3 * 24 + 6  # the end is exclusive
    last = series.read_table(SeriesConfig(csv=str(csv), end="2024-01-05", train_length=30))
    assert len(last.times) == 30 and str(last.times[-1]) == "2024-01-04 23:00:00+00:00"
    with pytest.raises(UserError, match="--start 'soon' is not a date"):
        series.read_table(SeriesConfig(csv=str(csv), start="soon"))
    with pytest.raises(UserError, match="0 row\\(s\\) between --start and --end"):
        series.read_table(SeriesConfig(csv=str(csv), start="2030-01-01"))
