"""Candles from a local data directory (searched recursively).

Understood layouts:

* freqtrade: ``PAIR-TF.feather`` (columns date, open, high, low, close, volume) and
  ``PAIR-TF.json`` / ``.json.gz`` (an array of ``[ms, open, high, low, close, volume]``),
  PAIR being the symbol with "/" and ":" turned into "_". Futures files
  (``BTC_USDT_USDT-1h-futures.feather``) become ``BTC/USDT:USDT`` and are never served
  for the spot symbol; mark/index/funding-rate files are ignored.
* Binance kline exports (data.binance.vision): ``BTCUSDT-1h-2024-01.csv`` (monthly) or
  ``BTCUSDT-1h-2024-01-15.csv`` (daily), also zipped, with or without a header row; all
  files of one pair and timeframe are concatenated in date order. Open times are in ms,
  or in µs (spot files from 2025 on): the unit is told by magnitude, row by row.

A timeframe missing on disk is built from the largest lower one that divides it
(complete buckets only, see :mod:`tools.resample`). The source repairs nothing: rows
come back in file order with duplicates, NaNs and impossible candles intact, so the
data-quality gate can see and report them.
"""

from __future__ import annotations

import asyncio
import difflib
import gzip
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tools.market_data.base import OHLCV_COLUMNS, MarketDataError, MarketInfo, UnknownSymbol
from tools.resample import resample
from tools.timeframes import TIMEFRAMES, as_utc, period, sort_timeframes

_FREQTRADE = re.compile(
    r"^(?P<pair>[A-Za-z0-9_\-]+?)-(?P<tf>\d+[A-Za-z]{1,2})(?:-(?P<kind>[A-Za-z_]+))?\.(?P<ext>feather|json|json\.gz|jsongz)$"
)
_BINANCE = re.compile(
    r"^(?P<pair>[A-Z0-9]+)-(?P<tf>\d+[A-Za-z]{1,2})-(?P<y>\d{4})-(?P<m>\d{2})(?:-(?P<d>\d{2}))?\.(?P<ext>csv|zip)$"
)
_FORMAT_RANK = {"feather": 0, "json": 1, "json.gz": 2, "jsongz": 2}
# Binance spot quote assets, longest first so that FDUSD/TUSD/USDT win over USD.
_QUOTES = sorted(
    ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "GBP", "BRL",
     "AUD", "JPY", "RUB", "UAH", "ZAR", "IDR", "PLN", "RON", "ARS", "MXN", "USD"),
    key=len,
    reverse=True,
)  # fmt: skip
_NAT = np.iinfo(np.int64).min
_NS = 1_000_000_000


@dataclass(frozen=True)
class _File:
    path: Path
    kind: str  # "freqtrade" or "binance"
    order: tuple  # format precedence (freqtrade) or date order (binance)


def _freqtrade_symbol(pair: str) -> str:
    """``BTC_USDT`` -> ``BTC/USDT``, ``BTC_USDT_USDT`` -> ``BTC/USDT:USDT`` (as freqtrade names them)."""
    parts = pair.split("_")
    if len(parts) == 1:
        return pair
    return f"{parts[0]}/{parts[1]}" + (":" + "_".join(parts[2:]) if len(parts) > 2 else "")


def _binance_symbol(pair: str) -> str:
    for quote in _QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return f"{pair[: -len(quote)]}/{quote}"
    return pair


def _compact(symbol: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


def _epoch_ns(raw: pd.Series) -> np.ndarray:
    """Epoch numbers in s, ms, µs or ns (told apart by magnitude, per row) as int64 ns; NaT where unreadable."""
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(len(num), _NAT, dtype=np.int64)
    ok = np.isfinite(num)
    ints = np.round(num[ok]).astype(np.int64)
    size = np.abs(ints)
    scale = np.select([size < 10**11, size < 10**14, size < 10**17], [_NS, 10**6, 10**3], 1)
    out[ok] = ints * scale
    return out


def _times_ns(raw: pd.Series) -> np.ndarray:
    """Datetimes, epoch numbers or date strings (any mix) as int64 ns since the epoch."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return pd.DatetimeIndex(pd.to_datetime(raw, utc=True)).as_unit("ns").asi8
    out = _epoch_ns(raw)
    text = raw.notna().to_numpy() & (out == _NAT)
    if text.any():  # not numbers: try them as date strings
        parsed = pd.to_datetime(raw[text].astype(str), utc=True, errors="coerce", format="mixed")
        out[text] = pd.DatetimeIndex(parsed).as_unit("ns").asi8
    return out


def _candles(times_ns: np.ndarray, columns: list[pd.Series]) -> pd.DataFrame:
    index = pd.DatetimeIndex(times_ns.view("M8[ns]"), name="time").tz_localize(UTC)
    data = {
        name: pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for name, values in zip(OHLCV_COLUMNS, columns, strict=True)
    }
    return pd.DataFrame(data, index=index)


def _positional(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    if table.shape[1] < 6:
        raise MarketDataError(f"{path}: expected 6 columns (time, open, high, low, close, volume), found {table.shape[1]}")
    return _candles(_times_ns(table.iloc[:, 0]), [table.iloc[:, i] for i in range(1, 6)])


def _read_feather(path: Path) -> pd.DataFrame:
    table = pd.read_feather(path)
    names = {str(c).strip().lower(): c for c in table.columns}
    if "date" in names and all(c in names for c in OHLCV_COLUMNS):
        return _candles(_times_ns(table[names["date"]]), [table[names[c]] for c in OHLCV_COLUMNS])
    return _positional(table, path)  # freqtrade itself assigns the names by position


def _read_json(path: Path) -> pd.DataFrame:
    opener = gzip.open if path.name.endswith("gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        raise MarketDataError(f"{path}: expected a JSON array of [time, open, high, low, close, volume] rows")
    if not rows:
        return _candles(np.array([], dtype=np.int64), [pd.Series([], dtype=float)] * 5)
    return _positional(pd.DataFrame(rows), path)


def _read_binance(path: Path) -> pd.DataFrame:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not members:
                raise MarketDataError(f"{path}: the archive holds no CSV file")
            data = archive.read(members[0])
    else:
        data = path.read_bytes()
    first = next((line for line in data.splitlines() if line.strip()), b"")
    if not first:
        return _candles(np.array([], dtype=np.int64), [pd.Series([], dtype=float)] * 5)
    header = not re.match(rb"\s*[-+]?\d", first)  # a header row starts with a name, not a number
    table = pd.read_csv(io.BytesIO(data), header=None, skiprows=1 if header else 0, dtype=str, skip_blank_lines=True)
    return _positional(table, path)


_READERS = {"feather": _read_feather, "json": _read_json, "binance": _read_binance}


class FileSource:
    """Market data from files on disk: no network, no exchange metadata."""

    name: str = "files"

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser()
        if not self.data_dir.is_dir():
            raise MarketDataError(f"market data directory {self.data_dir} does not exist or is not a directory")
        self._reads: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}
        self._frames: dict[tuple[str, str], tuple[tuple, pd.DataFrame]] = {}

    # --- what is on disk ------------------------------------------------------------
    def _scan(self) -> dict[str, dict[str, list[_File]]]:
        found: dict[str, dict[str, list[_File]]] = {}
        for path in self.data_dir.rglob("*"):
            if m := _FREQTRADE.match(path.name):
                kind = m["kind"] or "spot"
                symbol, tf = _freqtrade_symbol(m["pair"]), m["tf"]
                if kind not in ("spot", "futures") or (kind == "futures") != (":" in symbol):
                    continue  # mark/index/funding-rate candles; futures never serve a spot symbol
                entry = _File(path, "freqtrade", (_FORMAT_RANK[m["ext"]], str(path)))
            elif m := _BINANCE.match(path.name):
                symbol, tf = _binance_symbol(m["pair"]), m["tf"]
                entry = _File(path, "binance", (int(m["y"]), int(m["m"]), int(m["d"] or 0), str(path)))
            else:
                continue
            if tf in TIMEFRAMES and path.is_file():
                found.setdefault(symbol, {}).setdefault(tf, []).append(entry)
        return found

    def available(self) -> dict[str, list[str]]:
        """Symbol -> timeframes present on disk, smallest first."""
        return {symbol: sort_timeframes(list(tfs)) for symbol, tfs in sorted(self._scan().items())}

    def _lookup(self, symbol: str, scan: dict[str, dict[str, list[_File]]]) -> str:
        if symbol in scan:
            return symbol
        if ":" not in symbol:  # BTCUSDT, btc_usdt, ... name BTC/USDT when that is unambiguous
            hits = [s for s in scan if ":" not in s and _compact(s) == _compact(symbol)]
            if len(hits) == 1:
                return hits[0]
        if not scan:
            raise UnknownSymbol(f"no market data for {symbol!r}: {self.data_dir} holds no candle files")
        close = difflib.get_close_matches(symbol.upper(), list(scan), n=5, cutoff=0.6)
        listed = f"close matches: {', '.join(close)}" if close else f"available: {', '.join(sorted(scan)[:20])}"
        raise UnknownSymbol(f"no market data for {symbol!r} in {self.data_dir}; {listed}")

    def _files(self, symbol: str, timeframe: str, files: list[_File]) -> list[_File]:
        single = [f for f in files if f.kind == "freqtrade"]
        if not single:
            return sorted(files, key=lambda f: f.order)
        folders = sorted({str(f.path.parent) for f in single})
        if len(folders) > 1:
            raise MarketDataError(
                f"{symbol} {timeframe} data is in several folders ({', '.join(folders)}); point the data directory at one"
            )
        return [min(single, key=lambda f: f.order)]

    # --- reading --------------------------------------------------------------------
    def _read(self, entry: _File, stamp: tuple[int, int]) -> pd.DataFrame:
        cached = self._reads.get(entry.path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        fmt = "binance" if entry.kind == "binance" else ("feather" if entry.path.suffix == ".feather" else "json")
        try:
            frame = _READERS[fmt](entry.path)
        except MarketDataError:
            raise
        except Exception as error:
            raise MarketDataError(f"cannot read {entry.path}: {error}") from error
        if (bad := np.flatnonzero(frame.index.isna())).size:  # a candle with no time cannot be placed
            raise MarketDataError(f"{entry.path}: {bad.size} rows with an unreadable open time (the first is data row {bad[0] + 1})")
        self._reads[entry.path] = (stamp, frame)
        return frame

    def _stored(self, files: list[_File]) -> tuple[tuple, pd.DataFrame]:
        stamps = []
        for f in files:
            try:
                st = f.path.stat()
            except OSError as error:
                raise MarketDataError(f"cannot read {f.path}: {error}") from error
            stamps.append((st.st_mtime_ns, st.st_size))
        frames = [self._read(f, s) for f, s in zip(files, stamps, strict=True)]
        signature = tuple((str(f.path), s) for f, s in zip(files, stamps, strict=True))
        return signature, frames[0] if len(frames) == 1 else pd.concat(frames)

    def _frame(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """All candles of ``timeframe`` on disk (file order), resampled when necessary."""
        step = period(timeframe)
        scan = self._scan()
        symbol = self._lookup(symbol, scan)
        on_disk = scan[symbol]
        source_tf = timeframe
        if timeframe not in on_disk:
            lower = [tf for tf in on_disk if period(tf) < step and not step % period(tf)]
            if not lower:
                have = ", ".join(sort_timeframes(list(on_disk)))
                raise MarketDataError(
                    f"no {timeframe} data for {symbol} in {self.data_dir} and no lower timeframe that divides it;"
                    f" on disk: {have}"
                )
            source_tf = max(lower, key=period)
        signature, raw = self._stored(self._files(symbol, source_tf, on_disk[source_tf]))
        key = (symbol, timeframe)
        cached = self._frames.get(key)
        if cached is not None and cached[0] == (source_tf, signature):
            return cached[1]
        frame = raw if source_tf == timeframe else resample(raw, source_tf, timeframe)
        self._frames[key] = ((source_tf, signature), frame)
        return frame

    @staticmethod
    def _closed(frame: pd.DataFrame, timeframe: str, until: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Open times (ns) and the mask of candles that have closed at ``until``."""
        t = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
        step = int(period(timeframe).total_seconds()) * _NS
        return t, (t != _NAT) & (t <= pd.Timestamp(as_utc(until)).value - step)

    # --- MarketDataSource -------------------------------------------------------------
    async def fetch_candles(self, symbol: str, timeframe: str, *, until: datetime, limit: int = 300) -> pd.DataFrame:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        frame = await asyncio.to_thread(self._frame, symbol, timeframe)
        t, closed = self._closed(frame, timeframe, until)
        rows = np.flatnonzero(closed)
        if len(rows) > limit:  # the newest by open time, kept in file order
            rows = np.sort(rows[np.argsort(t[rows], kind="stable")[-limit:]])
        return frame.iloc[rows]

    async def fetch_since(self, symbol: str, timeframe: str, *, since: datetime, until: datetime) -> pd.DataFrame:
        frame = await asyncio.to_thread(self._frame, symbol, timeframe)
        t, closed = self._closed(frame, timeframe, until)
        return frame.iloc[np.flatnonzero(closed & (t >= pd.Timestamp(as_utc(since)).value))]

    async def market_info(self, symbol: str) -> MarketInfo | None:
        return None

    async def markets(self) -> list[MarketInfo]:
        """Every symbol with files on disk; files say nothing of 24h volume, so it is unknown (None)."""
        listed = []
        for symbol in self.available():
            base, quote = symbol.split(":")[0].split("/")
            listed.append(MarketInfo(symbol=symbol, base=base, quote=quote, type="swap" if ":" in symbol else "spot", active=True))
        return listed

    async def close(self) -> None:
        return None

    def latest_close(self, symbol: str, timeframe: str) -> datetime | None:
        """Close time of the newest candle on disk (resampled if needed); None when there is none."""
        t = pd.DatetimeIndex(self._frame(symbol, timeframe).index).as_unit("ns").asi8
        t = t[t != _NAT]
        if len(t) == 0:
            return None
        return pd.Timestamp(int(t.max()), tz=UTC).to_pydatetime() + period(timeframe)
