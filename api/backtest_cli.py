"""`aitrader backtest`: every strategy (and their ensemble) over stored, file or built-in candles.

Candles. ``--data-dir`` reads freqtrade / Binance files. Otherwise the candle
store is read for (exchange, symbol, timeframe) between ``--since`` (default:
the first stored candle) and ``--until`` (default: now). A symbol the store
has nothing for falls back to the offline built-in source over the window
(``--since`` defaulting to 30 days before ``--until``), and the output says so.

Regime per candle (for the per-regime breakdown). ``nodes.regime`` classifies
the last candle only; a backtest needs a label for every candle, so this uses
a simplified, vectorized rule on the ``enrich`` columns: TRENDING_UP when
adx >= 20 and ema_fast > ema_slow, TRENDING_DOWN when adx >= 20 and
ema_fast < ema_slow, RANGING otherwise (also while the indicators warm up).
It has no VOLATILE label and no slope condition, so it is coarser than the node.

Ensemble rule, per candle. score = sum over strategies of direction x
confidence. The ensemble goes the sign of the score only when at least two
strategies signal that same direction (one strategy alone is an opinion, as in
the aggregator); otherwise it is flat. Its stop and target are those of the
agreeing strategy with the highest confidence, and its confidence is
min(1, |score| / number of agreeing strategies).

Pooling. A strategy's results over several symbols are its trades from all of
them together, ordered by entry time (one compounded curve for the drawdown).

Persistence. After the run each strategy version's pooled record is written
to the graph store at ``("strategy_stats",)`` / ``"name@version"`` as a
``StrategyTrackRecord``: sharpe = per-trade Sharpe (0 when undefined),
win_rate, payoff = average win / average loss clipped to [0.01, 10] (10 when
there is no loss, 0.01 when there is no win), trades. A strategy without
trades is not written; the ensemble is not a strategy version and is never written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from nodes.aggregate import TRACK_RECORD_NAMESPACE
from nodes.strategies import Strategy, registered_strategies
from state import Settings
from state.sections import StrategyTrackRecord
from tools.backtest import BacktestResult, EquityPoint, Trade, run_backtest
from tools.backtest_metrics import (
    Metrics,
    by_regime,
    monte_carlo_drawdown,
    trade_metrics,
    walk_forward,
)
from tools.indicators import enrich
from tools.market_data.builtin import BuiltinSource
from tools.market_data.files import FileSource
from tools.quality import normalize
from tools.storage import Storage
from tools.timeframes import as_utc, floor_time, period

ENSEMBLE = "ENSEMBLE"
MIN_AGREEING = 2
TREND_ADX = 20.0
FALLBACK_DAYS = 30
PAYOFF_CAP, PAYOFF_FLOOR = 10.0, 0.01
EPOCH = datetime(2009, 1, 3, tzinfo=UTC)


def add_parser(sub: argparse._SubParsersAction) -> None:
    bt = sub.add_parser("backtest", help="backtest the strategies and their ensemble; store each strategy's record")
    bt.add_argument("--symbols", required=True, help="comma-separated, e.g. BTC/USDT,ETH/USDT")
    bt.add_argument("--timeframe", default="1h", help="candle timeframe, e.g. 5m (default 1h)")
    bt.add_argument("--data-dir", help="freqtrade / Binance data directory (default: the candle store)")
    bt.add_argument("--exchange", help="exchange of the stored candles (default from settings)")
    bt.add_argument("--strategies", help="comma-separated names (default: every registered, non-shadow strategy)")
    bt.add_argument("--since", type=datetime.fromisoformat, help="first candle (ISO time, UTC)")
    bt.add_argument("--until", type=datetime.fromisoformat, help="last moment (ISO time, UTC; default now)")
    bt.add_argument(
        "--walk-forward", type=int, nargs="?", const=4, default=0, metavar="N", help="add walk-forward folds (default 4)"
    )
    bt.add_argument("--monte-carlo", type=int, default=0, metavar="N", help="add N Monte Carlo reshuffles of the trades")
    bt.add_argument("--json", action="store_true", help="print one JSON document")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def select_strategies(names: str | None) -> list[Strategy]:
    live = {s.name: s for s in registered_strategies().values() if not s.shadow}
    if not names:
        return list(live.values())
    unknown = [n for n in _split(names) if n not in live]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(map(repr, unknown))}; known: {', '.join(live)}")
    return [live[n] for n in dict.fromkeys(_split(names))]


def regime_labels(frame: pd.DataFrame) -> pd.Series:
    """The simplified per-candle regime of the module docstring."""
    trend = frame["adx"] >= TREND_ADX
    up = trend & (frame["ema_fast"] > frame["ema_slow"])
    down = trend & (frame["ema_fast"] < frame["ema_slow"])
    return pd.Series(np.select([up, down], ["TRENDING_UP", "TRENDING_DOWN"], "RANGING"), index=frame.index)


def ensemble_signals(signals: list[pd.DataFrame]) -> pd.DataFrame:
    """Combine strategy signal frames (same index) by the ensemble rule of the module docstring."""
    index = signals[0].index
    d = np.column_stack([np.sign(np.nan_to_num(s["direction"].to_numpy(dtype=float))) for s in signals])
    c = np.column_stack([np.nan_to_num(s["confidence"].to_numpy(dtype=float)) for s in signals])
    stops = np.column_stack([s["stop"].to_numpy(dtype=float) for s in signals])
    targets = np.column_stack([s["target"].to_numpy(dtype=float) for s in signals])
    score = (d * c).sum(axis=1)
    side = np.sign(score)
    agree = (d == side[:, None]) & (side[:, None] != 0)
    count = agree.sum(axis=1)
    ok = count >= MIN_AGREEING
    best = np.where(agree, c, -np.inf).argmax(axis=1)
    rows = np.arange(len(index))
    return pd.DataFrame(
        {
            "direction": np.where(ok, side, 0.0),
            "confidence": np.where(ok, np.minimum(1.0, np.abs(score) / np.maximum(count, 1)), 0.0),
            "stop": np.where(ok, stops[rows, best], np.nan),
            "target": np.where(ok, targets[rows, best], np.nan),
        },
        index=index,
    )


@dataclass
class Loaded:
    candles: pd.DataFrame
    source: str
    note: str = ""


async def load_candles(args: argparse.Namespace, settings: Settings, storage: Storage, symbol: str) -> Loaded:
    timeframe = args.timeframe
    until = as_utc(args.until) if args.until else datetime.now(UTC)
    since = as_utc(args.since) if args.since else None
    if args.data_dir:
        frame = await FileSource(Path(args.data_dir)).fetch_since(symbol, timeframe, since=since or EPOCH, until=until)
        loaded = Loaded(frame, f"files:{args.data_dir}")
    else:
        exchange = args.exchange or settings.exchange
        bounds = await storage.candles.bounds(exchange, symbol, timeframe)
        frame = pd.DataFrame()
        if bounds is not None:
            first = max(since or bounds[0], bounds[0])
            limit = max(1, (until - floor_time(first, timeframe)) // period(timeframe) + 1)
            frame = await storage.candles.read(exchange, symbol, timeframe, until=until, limit=limit)
            frame = frame[frame.index >= pd.Timestamp(first)]
        if len(frame):
            loaded = Loaded(frame, f"store:{exchange}")
        else:
            start = since or until - timedelta(days=FALLBACK_DAYS)
            frame = await BuiltinSource().fetch_since(symbol, timeframe, since=start, until=until)
            loaded = Loaded(frame, "builtin", f"no stored {timeframe} candles for {symbol} on {exchange}: used the built-in source")
    if len(loaded.candles) < 2:
        raise ValueError(f"too few {timeframe} candles for {symbol} ({len(loaded.candles)}) in the window")
    loaded.candles, _ = normalize(loaded.candles)
    return loaded


def pooled_result(results: list[BacktestResult]) -> BacktestResult:
    """One result holding every symbol's trades, ordered by entry time, over the union of the spans."""
    trades = sorted((t for r in results for t in r.trades), key=lambda t: (t.entry_time, t.exit_time))
    start, end = min(r.start for r in results), max(r.end for r in results)
    equity = np.cumprod([1 + t.return_pct / 100 for t in trades]).tolist() if trades else []
    points = [EquityPoint(time=start, equity=1.0)] + [
        EquityPoint(time=t.exit_time, equity=e) for t, e in zip(trades, equity, strict=True)
    ]
    first = results[0]
    return BacktestResult(
        start=start, end=end, candles=sum(r.candles for r in results), fee_rate=first.fee_rate,
        slippage_bps=first.slippage_bps, trades=trades, equity=points,
    )  # fmt: skip


def track_record(trades: list[Trade]) -> StrategyTrackRecord | None:
    if not trades:
        return None
    r = np.array([t.return_pct for t in trades], dtype=float) / 100
    wins, losses = r[r > 0], -r[r < 0]
    std = float(r.std(ddof=1)) if r.size >= 2 else 0.0
    sharpe = float(r.mean()) / std if std > 0 else 0.0
    if losses.size == 0:
        payoff = PAYOFF_CAP
    elif wins.size == 0:
        payoff = PAYOFF_FLOOR
    else:
        payoff = min(PAYOFF_CAP, max(PAYOFF_FLOOR, float(wins.mean()) / float(losses.mean())))
    return StrategyTrackRecord(sharpe=sharpe, win_rate=float((r > 0).mean()), payoff=payoff, trades=int(r.size))


def _dump(model: Any) -> Any:
    return json.loads(model.model_dump_json())


@dataclass
class Report:
    name: str
    version: str | None
    result: BacktestResult
    per_symbol: dict[str, Metrics] = field(default_factory=dict)

    def document(self, folds: int, runs: int) -> dict[str, Any]:
        span = (self.result.end - self.result.start) / timedelta(days=1)
        doc: dict[str, Any] = {
            "strategy": self.name,
            "version": self.version,
            "overall": _dump(trade_metrics(self.result.trades, span)),
            "by_regime": {k: _dump(v) for k, v in by_regime(self.result).items()},
            "per_symbol": {k: _dump(v) for k, v in self.per_symbol.items()},
        }
        if folds:
            doc["walk_forward"] = _dump(walk_forward(self.result, n_folds=folds))
        if runs:
            doc["monte_carlo"] = _dump(monte_carlo_drawdown([t.return_pct for t in self.result.trades], runs=runs))
        return doc


async def run(args: argparse.Namespace, settings: Settings, storage: Storage) -> int:
    strategies = select_strategies(args.strategies)
    period(args.timeframe)  # an unknown timeframe is a usage error before any work
    if args.walk_forward < 0 or args.monte_carlo < 0:
        raise ValueError("--walk-forward and --monte-carlo take a positive count")
    symbols = [s.upper() for s in _split(args.symbols)]
    if not symbols:
        raise ValueError("--symbols names no symbol")
    names = [s.name for s in strategies] + [ENSEMBLE]
    per_name: dict[str, list[tuple[str, BacktestResult]]] = {n: [] for n in names}
    sources: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(symbols) * len(names), unit="job", desc="backtest", file=sys.stderr, dynamic_ncols=True) as bar:
        for symbol in symbols:
            loaded = await load_candles(args, settings, storage, symbol)
            candles = loaded.candles
            sources[symbol] = {
                "source": loaded.source, "candles": len(candles), "note": loaded.note,
                "start": candles.index[0].isoformat(), "end": candles.index[-1].isoformat(),
            }  # fmt: skip
            frame = enrich(candles)
            regimes = regime_labels(frame)
            signal_frames = []
            for strategy in strategies:
                bar.set_postfix_str(f"{symbol} {strategy.name}")
                signals = strategy.evaluate(frame)
                signal_frames.append(signals)
                result = run_backtest(candles, signals, fee_rate=settings.fee_rate, slippage_bps=settings.slippage_bps, regimes=regimes)
                per_name[strategy.name].append((symbol, result))
                bar.update()
            bar.set_postfix_str(f"{symbol} {ENSEMBLE}")
            combined = ensemble_signals(signal_frames)
            result = run_backtest(candles, combined, fee_rate=settings.fee_rate, slippage_bps=settings.slippage_bps, regimes=regimes)
            per_name[ENSEMBLE].append((symbol, result))
            bar.update()

    versions = {s.name: s.version for s in strategies}
    reports = []
    for name in names:
        pairs = per_name[name]
        per_symbol = {sym: trade_metrics(r.trades, (r.end - r.start) / timedelta(days=1)) for sym, r in pairs}
        reports.append(Report(name, versions.get(name), pooled_result([r for _, r in pairs]), per_symbol))

    persisted = []
    for report in reports:
        if report.version is None:
            continue
        record = track_record(report.result.trades)
        if record is None:
            continue
        key = f"{report.name}@{report.version}"
        await storage.store.aput(TRACK_RECORD_NAMESPACE, key, record.model_dump())
        persisted.append(key)

    documents = [r.document(args.walk_forward, args.monte_carlo) for r in reports]
    header = {
        "timeframe": args.timeframe,
        "symbols": sources,
        "fee_rate": settings.fee_rate,
        "slippage_bps": settings.slippage_bps,
        "regime_rule": "TRENDING_UP: adx>=20 and ema_fast>ema_slow; TRENDING_DOWN: adx>=20 and ema_fast<ema_slow; else RANGING",
        "ensemble_rule": "sign of sum(direction x confidence) when >= 2 strategies agree; stop/target of the most confident agreeing one",
        "persisted": persisted,
    }
    if args.json:
        print(json.dumps({**header, "strategies": documents}, indent=2))
    else:
        print(render(header, documents))
    return 0


def _num(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) or (isinstance(value, float) and math.isinf(value)):
        return "inf"
    return format(value, fmt)


def _row(label: str, m: dict[str, Any], width: int) -> str:
    win = _num(m["win_rate"] * 100 if m["win_rate"] is not None else None, ".1f")
    return (
        f"{label:<{width}} {m['trades']:>7} {win:>7} {_num(m['sharpe'], '.3f'):>8} {_num(m['sortino'], '.3f'):>8}"
        f" {_num(m['max_drawdown_pct'], '.2f'):>9} {_num(m['profit_factor'], '.2f'):>8}"
    )


def _head(label: str, width: int) -> str:
    return f"{label:<{width}} {'trades':>7} {'win %':>7} {'sharpe':>8} {'sortino':>8} {'max DD %':>9} {'PF':>8}"


def render(header: dict[str, Any], documents: list[dict[str, Any]]) -> str:
    lines = []
    for symbol, info in header["symbols"].items():
        lines.append(f"{symbol}: {info['candles']:,} x {header['timeframe']} from {info['source']}, {info['start']} .. {info['end']}")
        if info["note"]:
            lines.append(f"  note: {info['note']}")
    lines.append("")
    width = max(len(d["strategy"]) for d in documents) + 2
    lines.append(_head("strategy", width))
    lines += [_row(d["strategy"], d["overall"], width) for d in documents]
    lines += ["", "per regime (at the signal candle)", _head("strategy / regime", width + 16)]
    for d in documents:
        lines += [_row(f"{d['strategy']} / {regime}", m, width + 16) for regime, m in d["by_regime"].items()]
    if any("walk_forward" in d for d in documents):
        lines += ["", "walk-forward, out of sample (all folds pooled)", _head("strategy", width)]
        lines += [_row(d["strategy"], d["walk_forward"]["out_of_sample"], width) for d in documents if "walk_forward" in d]
    if any("monte_carlo" in d for d in documents):
        lines += ["", "Monte Carlo max drawdown %", f"{'strategy':<{width}} {'runs':>6} {'actual':>8} {'P5':>8} {'P50':>8} {'P95':>8}"]
        for d in documents:
            mc = d.get("monte_carlo")
            if mc:
                lines.append(
                    f"{d['strategy']:<{width}} {mc['runs']:>6} {mc['original_pct']:>8.2f} {mc['p5_pct']:>8.2f}"
                    f" {mc['p50_pct']:>8.2f} {mc['p95_pct']:>8.2f}"
                )
    if header["persisted"]:
        lines += ["", f"track records stored: {', '.join(header['persisted'])}"]
    return "\n".join(lines)
