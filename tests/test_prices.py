"""Price CSV loading (Binance klines and headered OHLCV), resampling to N-hour opens, and bad files."""

import numpy as np
import pandas as pd
import pytest

from rnnlab.data.prices import load_prices, parse_every, resample_opens
from rnnlab.errors import UserError

T0 = pd.Timestamp("2020-01-01 00:00", tz="UTC")


def candles(n=40, step_hours=2, seed=0):
    rng = np.random.default_rng(seed)
    times = T0 + pd.to_timedelta(np.arange(n) * step_hours, unit="h")
    opens = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return times, opens


def write_headered(path, times, opens, header="timestamp,open,high,low,close,volume", fmt="iso"):
    lines = [header]
    for t, o in zip(times, opens):
        stamp = {
            "iso": t.strftime("%Y-%m-%d %H:%M:%S"),
            "s": str(int(t.timestamp())),
            "ms": str(int(t.timestamp() * 1000)),
        }[fmt]
        lines.append(f"{stamp},{o},{o * 1.01},{o * 0.99},{o},{1.5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_binance(path, times, opens):
    lines = []
    for t, o in zip(times, opens):
        ms = int(t.timestamp() * 1000)
        lines.append(f"{ms},{o},{o * 1.01},{o * 0.99},{o},1.5,{ms + 7199999},150.0,42,0.7,70.0,0")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["iso", "s", "ms"])
def test_headered_and_binance_files_load_alike(tmp_path, fmt):
    times, opens = candles()
    a = load_prices(write_headered(tmp_path / "a.csv", times, opens, fmt=fmt))
    b = load_prices(write_binance(tmp_path / "b.csv", times, opens))
    for d in (a, b):
        assert str(d.frame.index.tz) == "UTC" and d.frame.index.is_monotonic_increasing
        assert (d.frame.index == times).all()
        np.testing.assert_allclose(d.frame["open"].to_numpy(), opens, rtol=1e-12)
        assert d.step == pd.Timedelta(hours=2) and d.gaps == [] and d.notes() == []


def test_other_spellings_unsorted_rows_and_duplicates(tmp_path):
    times, opens = candles(10)
    order = np.r_[5:10, 0:5, 3]  # shuffled, with row 3 twice
    path = write_headered(tmp_path / "c.csv", times[order], opens[order], header="Date,Open,High,Low,Close,Vol")
    d = load_prices(path)
    assert len(d.frame) == 10 and d.frame.index.is_monotonic_increasing
    assert d.duplicates_dropped == 1 and "1 duplicated timestamp" in d.notes()[0]


def test_gaps_are_reported_and_resampling_leaves_empty_bins_out(tmp_path):
    times, opens = candles(60)
    keep = np.r_[0:20, 35:60]  # 15 two-hour candles missing: one 20-hour bin has no row at all
    d = load_prices(write_headered(tmp_path / "g.csv", times[keep], opens[keep]))
    assert len(d.gaps) == 1 and d.gaps[0][2] == 15 and "not filled" in d.notes()[0]
    r = resample_opens(d.frame, parse_every("20h"))
    starts = T0 + pd.to_timedelta(np.arange(6) * 20, unit="h")
    assert r.empty_bins == [starts[2]]
    assert list(r.opens.index) == [s for s in starts if s != starts[2]]
    # Each bin's value is the first open inside it: bin 3 starts at 60 h but its first row is at 70 h.
    assert r.opens.iloc[0] == opens[0] and r.opens.loc[starts[3]] == opens[35]


def test_resampling_is_anchored_at_the_first_selected_row_and_end_is_exclusive(tmp_path):
    times, opens = candles(40)
    d = load_prices(write_headered(tmp_path / "r.csv", times, opens))
    r = resample_opens(d.frame, parse_every("20h"), start="2020-01-01 06:00", end="2020-01-03 14:00")
    assert r.opens.index[0] == T0 + pd.Timedelta(hours=6) and r.opens.iloc[0] == opens[3]
    assert len(r.opens) == 3 and r.opens.iloc[-1] == opens[23]  # bins start 6 h, 26 h, 46 h; 66 h is past --end
    with pytest.raises(UserError, match="--end"):
        resample_opens(d.frame, parse_every("20h"), start="2020-01-02", end="2020-01-01")


def test_parse_every():
    assert parse_every("20h") == pd.Timedelta(hours=20)
    assert parse_every("1d") == pd.Timedelta(days=1) and parse_every("90min") == pd.Timedelta(minutes=90)
    assert parse_every("4") == pd.Timedelta(hours=4)
    for bad in ("0h", "-2h", "soon", "20x"):
        with pytest.raises(UserError, match="--every"):
            parse_every(bad)


@pytest.mark.parametrize(
    "content,match",
    [
        ("timestamp,close\n2020-01-01,5\n", "no open column"),
        ("when,open\n2020-01-01,5\n", "no timestamp column"),
        ("timestamp,open\n2020-01-01,5\nyesterday,6\n", "line 3: cannot read timestamp 'yesterday'"),
        ("timestamp,open\n2020-01-01,5\n2020-01-02,nan\n", "line 3: open is 'nan'"),
        ("timestamp,open\n2020-01-01,inf\n", "line 2: open is 'inf'"),
        ("timestamp,open\n2020-01-01,5\n2020-01-02,\n", "line 3: open is empty"),
        ("timestamp,open\n,5\n", "line 2: cannot read timestamp"),
        ("timestamp,open,high\n2020-01-01,5,6\n2020-01-02,-3,6\n", "line 3: open price is -3"),
        ("timestamp,open\n2020-01-01,0\n", "line 2: open price is 0"),
        ("", "is empty"),
        ("timestamp,open\n", "no rows"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=match):
        load_prices(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_prices(tmp_path / "nope.csv")


def _reference_opens(frame, every, t0):
    """The first open of each bin by integer bin numbers, written out: the definition the
    library's pandas resampling must match."""
    bins = np.floor((frame.index - t0) / every).astype(np.int64)
    firsts = frame["open"].groupby(bins).first()
    starts = [t0 + every * int(k) for k in firsts.index]
    empty = [t0 + every * int(k) for k in np.setdiff1d(np.arange(bins.min(), bins.max() + 1), firsts.index)]
    return starts, firsts.to_numpy(), empty


@pytest.mark.parametrize("seed", range(8))
def test_resampling_matches_integer_bins_on_gappy_series(seed):
    from rnnlab.data.prices import resample_opens

    rng = np.random.default_rng(seed)
    n = 400
    times = pd.Timestamp("2021-01-01 00:37", tz="UTC") + pd.to_timedelta(
        np.cumsum(rng.integers(1, 6, n)) * 30, unit="min"
    )
    keep = rng.random(n) > 0.25  # gaps of every length ...
    keep[150:230] = False  # ... and one of days
    frame = pd.DataFrame(
        {"open": rng.random(int(keep.sum())) + 1.0}, index=pd.DatetimeIndex(times[keep], name="timestamp")
    )
    every = pd.Timedelta(minutes=int(rng.integers(30, 1500)))
    anchor = None if seed % 2 else frame.index[0] + pd.Timedelta(minutes=int(rng.integers(-5000, 5000)))
    result = resample_opens(frame, every, anchor=anchor)
    starts, opens, empty = _reference_opens(frame, every, frame.index[0] if anchor is None else anchor)
    assert list(result.opens.index) == starts
    np.testing.assert_array_equal(result.opens.to_numpy(), opens)
    assert list(result.empty_bins) == empty and len(empty) > 0
