"""data/table.py, the data side of the series task: any regular numeric series read and
checked (each problem one line naming column and line), the papers' splits, windows at stride 1,
and the closed-form baselines."""

import re

import numpy as np
import pandas as pd
import pytest

from rnnlab.data.table import (
    Ridge,
    Standardizer,
    builtin_frame,
    errors_by_step,
    ett_hour_splits,
    load_table,
    repeat_last,
    seasonal_naive,
    windows,
)
from rnnlab.errors import UserError


def frame(n=50, step="1h", seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-01", periods=n, freq=step)
    return pd.DataFrame(
        {"date": times.strftime("%Y-%m-%d %H:%M:%S"), "load": rng.normal(size=n).cumsum(), "temp": rng.normal(size=n)}
    )


def test_a_csv_and_a_dataframe_read_alike(tmp_path):
    f = frame()
    f.to_csv(tmp_path / "s.csv", index=False)
    from_csv = load_table(tmp_path / "s.csv")
    indexed = f.set_index(pd.to_datetime(f["date"])).drop(columns="date")
    from_frame = load_table(indexed)
    assert from_csv.columns == ("load", "temp") == from_frame.columns
    np.testing.assert_array_equal(from_csv.values, from_frame.values)
    assert from_csv.step == pd.Timedelta(hours=1)
    assert load_table(tmp_path / "s.csv", columns=["temp"]).values.shape == (50, 1)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda f: f.iloc[[0, 2, 1, *range(3, 50)]], "line 4: the time 2021-01-01 01:00:00+00:00 comes before"),
        (lambda f: f.iloc[[0, 1, 1, *range(2, 50)]], "line 4: the time 2021-01-01 01:00:00+00:00 repeats"),
        (lambda f: f.drop(index=10), "line 12: the series is not regular"),
        (lambda f: f.assign(temp=f["temp"].astype(object).where(f.index != 7, "n/a")), "line 9: temp is 'n/a'"),
        (lambda f: f.assign(load=f["load"].where(f.index != 4, np.nan)), "line 6: load is empty"),
        (lambda f: f.assign(temp=3.0), "column 'temp' is constant (3)"),
        (
            lambda f: f.assign(date=f["date"].where(f.index != 2, "yesterday")),
            "line 4: cannot read the time 'yesterday'",
        ),
    ],
    ids=["unsorted", "duplicate", "irregular", "not-a-number", "missing", "constant", "bad-time"],
)
def test_each_problem_is_one_line_naming_column_and_line(edit, match, tmp_path):
    edit(frame()).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match=re.escape(match)):
        load_table(tmp_path / "bad.csv")


def test_windows_are_every_pair_at_stride_1():
    values = np.arange(20.0).reshape(10, 2)
    x, y = windows(values, 3, 2)
    assert x.shape == (6, 3, 2) and y.shape == (6, 2, 2)
    np.testing.assert_array_equal(x[4], values[4:7])
    np.testing.assert_array_equal(y[4], values[7:9])
    with pytest.raises(UserError, match="too few"):
        windows(values, 8, 3)


def test_the_ett_split_reaches_back_by_the_lookback():
    s = ett_hour_splits(17420, 96)
    assert s == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    with pytest.raises(UserError, match="14,400 hourly rows"):
        ett_hour_splits(10000, 96)


def test_the_standardizer_uses_the_training_rows_only():
    values = np.r_[np.zeros((5, 1)), np.ones((5, 1))] + np.arange(10.0)[:, None] * 0.01
    scaler = Standardizer.fit(values[:5])
    assert abs(scaler.transform(values[:5]).mean()) < 1e-12
    assert scaler.transform(values[5:]).mean() > 10  # the later level is not folded into the scale
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)


def test_baselines_in_closed_form():
    t = np.arange(400.0)
    periodic = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], axis=1)
    x, y = windows(periodic, 48, 30)
    assert errors_by_step(seasonal_naive(x, 30, 24), y)["mse"] < 1e-20  # exact on a 24-periodic series
    np.testing.assert_array_equal(repeat_last(x, 30)[:, 5], x[:, -1])
    # an AR(2) series: the next values are a linear map of the window, which ridge finds
    rng = np.random.default_rng(0)
    ar = np.zeros((3000, 3))
    for i in range(2, 3000):
        ar[i] = 1.5 * ar[i - 1] - 0.7 * ar[i - 2] + 0.1 * rng.normal(size=3)
    xa, ya = windows(ar, 16, 1)
    for shared in (True, False):
        fit = Ridge.fit(xa[:2000], ya[:2000], penalty=1e-6, shared=shared)
        got = errors_by_step(fit.predict(xa[2000:]), ya[2000:])
        assert got["mse"] == pytest.approx(0.01, rel=0.15)  # the noise variance: nothing left to learn
        assert got["mse"] < 0.6 * errors_by_step(repeat_last(xa[2000:], 1), ya[2000:])["mse"]
        assert len(got["mse_by_step"]) == 1


def test_parquet_reads_as_the_csv_does(tmp_path):
    pytest.importorskip("pyarrow")
    built = builtin_frame(200)
    built.to_parquet(tmp_path / "t.parquet")
    built.to_csv(tmp_path / "t.csv", index=False)
    from_parquet = load_table(str(tmp_path / "t.parquet"))
    from_csv = load_table(str(tmp_path / "t.csv"))
    np.testing.assert_array_equal(from_parquet.values, from_csv.values)
    assert from_parquet.columns == from_csv.columns and from_parquet.step == from_csv.step
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        load_table(str(tmp_path / "bad.parquet"))
