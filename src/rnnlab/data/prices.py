"""Price series: OHLCV CSV loading, N-hour resampling of opens, gap reports.

Two formats load into the same frame (UTC ``DatetimeIndex`` named ``timestamp``,
sorted, float columns ``open, high, low, close, volume`` where present):

* Binance kline CSVs: 12 columns, no header, open time as an epoch number
  (milliseconds; microseconds in Binance's files from 2025 on);
* headered OHLCV CSVs: ``timestamp,open,high,low,close,volume`` in any of the
  usual spellings (``time``, ``date``, ``Open``, ``o`` ...), timestamps as ISO
  text (no zone means UTC) or epoch seconds / milliseconds / microseconds.

Nothing is filled in silently: duplicated timestamps keep the first row and
are reported, gaps are reported, and resampling leaves empty bins out and
says which they were.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import UserError

PRICE_COLUMNS = ("open", "high", "low", "close")
ALIASES = {
    "timestamp": (
        "timestamp",
        "time",
        "date",
        "datetime",
        "date_time",
        "open_time",
        "opentime",
        "ts",
        "unix",
        "time_utc",
    ),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price"),
    "volume": ("volume", "vol", "v", "volume_base"),
}
# Cells stay text exactly as written ("nan" stays "nan"); only empty cells become missing.
READ_AS_TEXT = dict(dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=True)
BINANCE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)


@dataclass
class PriceData:
    """A loaded price file: the frame and what was noticed while loading it."""

    frame: pd.DataFrame
    source: str
    duplicates_dropped: int = 0
    gaps: list = field(default_factory=list)  # (last time before, first time after, missing rows)
    step: pd.Timedelta | None = None  # the usual spacing of rows

    def notes(self) -> list[str]:
        out = []
        if self.duplicates_dropped:
            out.append(f"{self.source}: {self.duplicates_dropped} duplicated timestamp(s); kept the first row of each")
        if self.gaps:
            missing = sum(g[2] for g in self.gaps)
            first = self.gaps[0]
            out.append(
                f"{self.source}: {len(self.gaps)} gap(s) in the {_hours(self.step)} series, {missing} row(s) "
                f"missing in all (first after {first[0]:%Y-%m-%d %H:%M}); not filled"
            )
        return out


def _hours(delta: pd.Timedelta | None) -> str:
    if delta is None:
        return "?"
    hours = delta / pd.Timedelta(hours=1)
    return f"{hours:g}-hour" if hours >= 1 else f"{delta / pd.Timedelta(minutes=1):g}-minute"


def _epoch_unit(values: np.ndarray) -> str:
    """Seconds, milliseconds or microseconds, from the size of the numbers (years 1973 to 5138)."""
    biggest = float(np.nanmax(np.abs(values))) if values.size else 0.0
    if biggest < 1e11:
        return "s"
    return "ms" if biggest < 1e14 else "us"


def _parse_times(raw: pd.Series, source: str, line_offset: int) -> pd.DatetimeIndex:
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        return pd.DatetimeIndex(pd.to_datetime(numeric.to_numpy(), unit=_epoch_unit(numeric.to_numpy()), utc=True))
    try:
        times = pd.to_datetime(raw, utc=True, format="mixed", errors="coerce")
    except (ValueError, TypeError):
        times = pd.Series(pd.NaT, index=raw.index)
    bad = times.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"{source}, line {i + line_offset}: cannot read timestamp {str(raw.iloc[i])!r}; use ISO "
            "text (2021-01-10 00:00:00) or epoch seconds/milliseconds"
        )
    return pd.DatetimeIndex(times)


# A candle row is a few hundred characters (Binance's 12 columns: about 130); the parser is not
# handed a line it would spend minutes on.
MAX_LINE_CHARS = 4096
MAX_COLUMNS = 64


def _check_line_shapes(source: str) -> None:
    """Refuse, before parsing, a file with a line longer than ``MAX_LINE_CHARS`` or a first line of
    more than ``MAX_COLUMNS`` fields, naming the line; each line is read at most that far."""
    with open(source, "rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 2), b""), start=1):
            if len(line.rstrip(b"\r\n")) > MAX_LINE_CHARS:
                raise UserError(
                    f"{source}, line {number}: longer than {MAX_LINE_CHARS:,} characters, which no candle row "
                    "is; is it a price CSV (one candle per line)?"
                )
            if number == 1 and line.count(b",") + 1 > MAX_COLUMNS:
                raise UserError(
                    f"{source}, line 1: {line.count(b',') + 1:,} columns, more than the {MAX_COLUMNS} a price CSV "
                    "can have (Binance klines have 12; OHLCV files 6 or so); is it a price CSV?"
                )


def exact_floats(cells: pd.Series) -> np.ndarray:
    """``[n]`` float64 of text cells, each the float nearest its decimal text (as Python's
    ``float``), NaN where a cell is not a number.  pandas may parse text to a float up to
    an ulp off (seen with pandas 2.0), so a price written and read back would differ."""
    try:
        return np.array(cells.to_numpy(), dtype=np.float64)
    except (TypeError, ValueError):  # a cell that is not a number: NaN there, exact elsewhere
        return np.array([_float_or_nan(c) for c in cells.to_numpy()], dtype=np.float64)


def _float_or_nan(cell) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return float("nan")


def _is_binance(first_line: str) -> bool:
    fields = first_line.strip().split(",")
    return len(fields) == 12 and re.fullmatch(r"\d{10,17}", fields[0].strip()) is not None


def load_prices(path: str | os.PathLike, columns: tuple = ("open",)) -> PriceData:
    """Load a Binance kline CSV or a headered OHLCV CSV (see the module docstring).

    Only ``columns`` are read and checked (prices finite and positive, volume finite and
    not negative, each bad cell named by its line): a run that uses only opens is not
    refused for a damaged volume it never reads.
    Long on purpose: the two formats' reading, then each check in the order a user would fix them,
    every message naming its line.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise UserError(f"price file {source!r} does not exist; pass --csv with a CSV of candles")
    if not os.path.isfile(source):
        raise UserError(f"price path {source!r} is not a regular file; pass --csv with a CSV of candles")
    _check_line_shapes(source)
    try:
        with open(source, encoding="utf-8") as f:
            first = f.readline()
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not a UTF-8 text CSV") from exc
    if not first.strip():
        raise UserError(f"{source} is empty; it needs a header row and at least one candle")
    try:
        if _is_binance(first):
            raw = pd.read_csv(source, header=None, names=BINANCE_COLUMNS, **READ_AS_TEXT)
            raw = raw.rename(columns={"open_time": "timestamp"})[
                ["timestamp", "open", "high", "low", "close", "volume"]
            ]
            line_offset = 1
        else:
            raw = pd.read_csv(source, **READ_AS_TEXT)
            raw = _rename_columns(raw, source)
            line_offset = 2  # 1-based lines, after the header
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{source} is not a readable CSV ({str(exc).strip()})") from exc
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{source} is not a UTF-8 text CSV (an undecodable byte after the first line); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from exc
    if raw.empty:
        raise UserError(f"{source} has a header but no rows")
    times = _parse_times(raw["timestamp"], source, line_offset)
    frame = pd.DataFrame(index=times)
    frame.index.name = "timestamp"
    missing = [col for col in columns if col not in raw]
    if missing:
        raise UserError(
            f"{source} has no {' or '.join(missing)} column (it has {', '.join(raw.columns)}); "
            f"--features {'ohlcv' if 'volume' in missing else 'ohlc'} needs it: use a file with "
            f"{', '.join(columns)} or --features {'ohlc' if missing == ['volume'] else 'open'}"
        )
    for col in columns:
        values = exact_floats(raw[col])
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = raw[col].iloc[i]
            shown = "empty" if pd.isna(cell) else repr(str(cell))
            raise UserError(
                f"{source}, line {i + line_offset}: {col} is {shown}, not a finite number; fix or remove the row"
            )
        if col in PRICE_COLUMNS and (values <= 0).any():
            i = int(np.flatnonzero(values <= 0)[0])
            raise UserError(f"{source}, line {i + line_offset}: {col} price is {values[i]:g}; prices must be positive")
        if col == "volume" and (values < 0).any():
            i = int(np.flatnonzero(values < 0)[0])
            raise UserError(f"{source}, line {i + line_offset}: volume is {values[i]:g}; a volume cannot be negative")
        frame[col] = values
    frame = frame.sort_index(kind="stable")
    duplicated = frame.index.duplicated(keep="first")
    frame = frame[~duplicated]
    data = PriceData(frame, source, duplicates_dropped=int(duplicated.sum()))
    data.step, data.gaps = find_gaps(frame.index)
    return data


def _rename_columns(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    lowered = {c: re.sub(r"[\s\-]+", "_", str(c).strip().lower()) for c in raw.columns}
    mapping = {}
    for canonical, names in ALIASES.items():
        found = [c for c, low in lowered.items() if low in names]
        if found:
            mapping[found[0]] = canonical
    missing = [c for c in ("timestamp", "open") if c not in mapping.values()]
    if missing:
        raise UserError(
            f"{source}: no {' or '.join(missing)} column (found {', '.join(map(str, raw.columns))}); "
            "expected timestamp,open,high,low,close,volume"
        )
    return raw[list(mapping)].rename(columns=mapping)


def find_gaps(index: pd.DatetimeIndex) -> tuple[pd.Timedelta | None, list]:
    """The usual spacing (median) and every place where rows are further apart than that."""
    if len(index) < 3:
        return None, []
    diffs = index[1:] - index[:-1]
    step = pd.Timedelta(diffs.median())  # a Timedelta whatever the index's resolution (s, ms, us or ns)
    gaps = [(index[i], index[i + 1], int(round(diffs[i] / step)) - 1) for i in np.flatnonzero(diffs > step * 1.5)]
    return step, gaps


def parse_every(text: str) -> pd.Timedelta:
    """'20h' -> 20 hours; also '90min', '2d' and a bare number of hours."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(h|hr|hours?|d|days?|min|m)?\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"--every must be a positive duration such as 20h, 90min or 1d, got {text!r}")
    value, unit = float(m.group(1)), m.group(2) or "h"
    return pd.Timedelta(**{"hours" if unit.startswith("h") else "days" if unit.startswith("d") else "minutes": value})


def parse_utc(text: str | None, flag: str) -> pd.Timestamp | None:
    if text in (None, ""):
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{flag} must be a date such as 2019-05-01, got {text!r}") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class Resampled:
    opens: pd.Series  # first open in each non-empty bin, indexed by the bin's start (UTC)
    empty_bins: list  # starts of bins with no row (left out, never filled)
    every: pd.Timedelta
    candles: pd.DataFrame | None = None  # the bins' own high (max), low (min), close (last), volume (sum)


def resample_opens(
    frame: pd.DataFrame,
    every: pd.Timedelta,
    start: str | None = None,
    end: str | None = None,
    anchor: pd.Timestamp | None = None,
) -> Resampled:
    """First open in each ``every``-long bin of [start, end), bins anchored at the first selected
    row, or at ``anchor`` (any time, earlier or later) to continue the bin grid of another series."""
    lo, hi = parse_utc(start, "--start"), parse_utc(end, "--end")
    if lo is not None and hi is not None and hi <= lo:
        raise UserError(f"--end {end} must be after --start {start}")
    selected = frame
    if lo is not None:
        selected = selected[selected.index >= lo]
    if hi is not None:
        selected = selected[selected.index < hi]
    if selected.empty:
        raise UserError(f"no rows between --start {start or 'the beginning'} and --end {end or 'the end'}")
    t0 = selected.index[0] if anchor is None else pd.Timestamp(anchor)
    # Bins [t0 + k every, t0 + (k+1) every) for every integer k, t0 before or after the data.
    bins = selected.resample(every, origin=t0, label="left", closed="left")
    binned = bins["open"].first()
    empty = list(binned.index[binned.isna()])
    opens = binned.dropna().rename("open")
    opens.index.name = "timestamp"
    candles = None
    if {"high", "low", "close"} <= set(selected.columns):
        how = {"open": "first", "high": "max", "low": "min", "close": "last"}
        if "volume" in selected.columns:
            how["volume"] = "sum"
        candles = bins.agg(how).loc[opens.index]
    return Resampled(opens, empty, every, candles)
