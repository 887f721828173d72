"""Node and tool logic on hand-built inputs whose right answer is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from nodes.fibonacci import retracement
from nodes.sanity import symbol_checks
from nodes.strategies import registered_strategies
from nodes.verify import signal_checks
from state.sections import ConsensusSection, Signal, failed_checks
from tools.brokers import BracketRequest
from tools.brokers.paper import PaperBroker
from tools.ledger import memory_ledger
from tools.execution_ids import client_order_id
from tools.pivots import cluster_prices, label_sequence, swing_pivots
from tools.quality import inspect, normalize

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def candles(n: int = 120, *, end: datetime = NOW - timedelta(hours=1)) -> pd.DataFrame:
    index = pd.date_range(end=end, periods=n, freq="1h", tz="UTC", name="time")
    close = 100 + np.sin(np.arange(n) / 5)
    return pd.DataFrame(
        {"open": close - 0.1, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 10.0}, index=index
    )


@pytest.mark.parametrize("symbol,bad", [("BTC/USDT", None), ("BTCUP/USDT", "not_leveraged_token"), ("ETHBEAR/USDT", "not_leveraged_token"), ("SOL3L/USDT", "not_leveraged_token"), ("JUP/USDT", None), ("BTC/TRY", "quote_allowed"), ("BTC/USDT:USDT", "spot_market")])
def test_sanity_name_rules(symbol: str, bad: str | None) -> None:
    failed = [c.name for c in failed_checks(symbol_checks(symbol))]
    assert failed == ([bad] if bad else [])


def test_clean_candles_pass_every_quality_check() -> None:
    assert failed_checks(inspect(candles(), "1h", NOW, min_candles=100)) == []


@pytest.mark.parametrize(
    "spoil,check",
    [
        (lambda f: f.iloc[:50], "enough_candles"),
        (lambda f: f.assign(close=f["close"].where(f.index != f.index[60], np.nan)), "finite_values"),
        (lambda f: f.assign(low=f["low"].where(f.index != f.index[70], -1.0)), "positive_prices"),
        (lambda f: f.assign(high=f["high"].where(f.index != f.index[80], 1.0)), "high_above_low"),
        (lambda f: f.assign(open=f["open"].where(f.index != f.index[90], 1000.0)), "open_close_in_range"),
    ],
)
def test_each_bad_candle_kind_fails_its_check(spoil, check: str) -> None:
    failed = [c.name for c in failed_checks(inspect(spoil(candles()), "1h", NOW, min_candles=100))]
    assert check in failed


def test_stale_feed_fails_freshness_and_gaps_are_counted() -> None:
    stale = candles(end=NOW - timedelta(hours=5))
    assert [c.name for c in failed_checks(inspect(stale, "1h", NOW, min_candles=100))] == ["fresh"]
    gappy = candles().drop(candles().index[[10, 11, 12, 40]])
    gaps = next(c for c in inspect(gappy, "1h", NOW, min_candles=100) if c.name == "gaps")
    assert gaps.detail.startswith("2 gaps, largest 0 days 04:00:00")


def test_normalize_sorts_and_drops_duplicates() -> None:
    frame = candles(10)
    messy = pd.concat([frame.iloc[5:], frame.iloc[:5], frame.iloc[[3]]])
    fixed, repairs = normalize(messy)
    assert fixed.index.is_monotonic_increasing and len(fixed) == 10
    assert repairs == ["sorted out-of-order candles", "dropped 1 duplicate candles"]


def test_swing_pivots_and_sequence_on_a_known_zigzag() -> None:
    # Highs at positions 2 (10), 6 (12), 10 (11); lows at 4 (5) and 8 (6).
    high = pd.Series([5, 7, 10, 7, 6, 8, 12, 8, 7, 9, 11, 9, 8], dtype=float)
    low = high - 1
    low[4], low[8] = 4.0, 5.0
    pivots = swing_pivots(high, low, width=2)
    assert [(p.position, p.kind) for p in pivots] == [(2, "high"), (4, "low"), (6, "high"), (8, "low"), (10, "high")]
    assert label_sequence(pivots) == ["HH", "HL", "LH"]
    # The last `width` candles can never be pivots yet: no look-ahead.
    assert all(p.position < len(high) - 2 for p in swing_pivots(high[:9], low[:9], width=2))


def test_cluster_prices_merges_within_tolerance() -> None:
    clusters = cluster_prices([100.0, 100.4, 105.0, 100.2], [1, 5, 7, 9], tolerance=0.5)
    assert [(round(c.price, 3), c.touches, c.last_position) for c in clusters] == [(100.2, 3, 9), (105.0, 1, 7)]


def test_fibonacci_retracement_of_an_up_impulse() -> None:
    assert retracement(100, 200, True, 0.618) == pytest.approx(138.2)
    assert retracement(100, 200, False, 0.5) == pytest.approx(150)


def consensus(direction: str, entry: float, stop: float, target: float) -> ConsensusSection:
    return ConsensusSection(
        as_of=NOW, produced_by="t", direction=direction, net_score=0.5, confidence=0.5, weights={}, contributions={},
        agreeing=["x"], entry=entry, stop=stop, targets=[target], timeframe="1h", reason="t",
    )


@pytest.mark.parametrize(
    "signal,failing",
    [
        (consensus("LONG", 100, 95, 110), []),
        (consensus("LONG", 100, 105, 110), ["stop_side", "reward_risk"]),
        (consensus("SHORT", 100, 105, 110), ["target_side", "reward_risk"]),
        (consensus("LONG", 100, 95, 102), ["reward_risk"]),
        (consensus("LONG", 100, float("nan"), 110), ["finite_levels"]),
    ],
)
def test_verification_catches_malformed_signals(signal: ConsensusSection, failing: list[str]) -> None:
    assert [c.name for c in failed_checks(signal_checks(signal))] == failing


def test_strategies_are_vectorized_over_history() -> None:
    from tools.indicators import enrich

    trending = candles(300)
    trending["close"] = np.linspace(100, 160, 300)
    trending["open"], trending["high"], trending["low"] = trending["close"] - 0.1, trending["close"] + 0.3, trending["close"] - 0.3
    frame = enrich(trending)
    for strategy in registered_strategies().values():
        signals = strategy.evaluate(frame)
        assert len(signals) == len(frame) and list(signals.columns) == ["direction", "confidence", "stop", "target"]
        assert signals["confidence"].between(0, 1).all()
    trend = registered_strategies()["ema_trend"].evaluate(frame)
    assert trend["direction"].iloc[-1] == 1 and trend["stop"].iloc[-1] < frame["close"].iloc[-1]


async def test_paper_broker_never_places_the_same_bracket_twice() -> None:
    ledger = memory_ledger()
    request = BracketRequest(
        bracket_id="at-1", symbol="BTC/USDT", side="buy", quantity=2, reference_price=100, stop=95, target=110, as_of=datetime(2026, 1, 1, tzinfo=UTC)
    )
    first = await PaperBroker(ledger, fee_rate=0.001, slippage_bps=10).place_bracket(request)
    # A second broker on the same ledger stands in for a restarted process: it adopts, it does not re-place.
    again = await PaperBroker(ledger, fee_rate=0.001, slippage_bps=10).place_bracket(request.model_copy(update={"quantity": 3}))
    assert again == first and again.quantity == 2
    assert len(await ledger.positions()) == 1
    entry = first.orders[0]
    assert entry.fill_price == pytest.approx(100.1) and entry.fee == pytest.approx(0.2002)
    assert [o.role for o in first.orders] == ["entry", "stop_loss", "take_profit"]
    assert [o.client_order_id for o in first.orders] == ["at-1-entry", "at-1-sl", "at-1-tp"]


def test_client_order_ids_are_stable_per_task_and_distinct_across_tasks() -> None:
    assert client_order_id("thread-1", "task-a") == client_order_id("thread-1", "task-a")
    assert client_order_id("thread-1", "task-a") != client_order_id("thread-1", "task-b")
    assert client_order_id("thread-2", "task-a") != client_order_id("thread-1", "task-a")


def test_confluence_merges_levels_within_tolerance_into_scored_zones() -> None:
    from nodes.confluence import merge_zones

    found = [(100.0, 1.0, "fib_0.618@1h"), (100.4, 1.5, "poc@1h"), (100.9, 1.0, "weekly_open"), (105.0, 2.0, "body_resistance@4h"), (90.0, 1.0, "prev_day_low")]
    zones = merge_zones(found, tolerance=0.5)
    assert [(z.low, z.high, z.score) for z in zones] == [(100.0, 100.9, 3.5), (105.0, 105.0, 2.0), (90.0, 90.0, 1.0)]
    assert zones[0].contributors == ["fib_0.618@1h", "poc@1h", "weekly_open"]
    # A tighter tolerance breaks the chain where the gap exceeds it.
    assert [z.score for z in merge_zones(found, tolerance=0.45)] == [2.5, 2.0, 1.0, 1.0]


def test_fibonacci_levels_of_a_known_impulse() -> None:
    from nodes.fibonacci import impulse_levels
    from tools.frames import IndicatorFrame

    # Low 100 at row 5, high 200 at row 15, then a pullback to 132: inside the golden pocket (129.4–133.4).
    closes = np.r_[np.linspace(110, 100, 6), np.linspace(105, 200, 10), np.linspace(190, 132, 6)]
    frame = pd.DataFrame({"open": closes, "high": closes + 0.1, "low": closes - 0.1, "close": closes, "volume": 1.0},
                         index=pd.date_range("2026-01-01", periods=len(closes), freq="1h", tz="UTC"))
    levels = impulse_levels(IndicatorFrame("1h", frame))
    assert levels.direction == "UP" and levels.swing_low == pytest.approx(99.9) and levels.swing_high == pytest.approx(200.1)
    assert levels.golden_pocket == pytest.approx((200.1 - 0.706 * 100.2, 200.1 - 0.666 * 100.2))
    assert levels.in_golden_pocket


def test_kelly_proposal_uses_track_records_and_never_exceeds_the_cap() -> None:
    from nodes.aggregate import kelly_fraction, performance_factor
    from state.sections import StrategyTrackRecord

    # No record: a coin flip at the signal's 1.5 reward/risk -> full Kelly 1/6, a quarter is 4.2 %, capped at 2 %.
    assert kelly_fraction([], 1.5) == 0.02
    # A record of 40 % winners paid 1.2:1 has no edge: nothing is risked.
    poor = StrategyTrackRecord(sharpe=-0.5, win_rate=0.4, payoff=1.2, trades=50)
    assert kelly_fraction([poor], 3.0) == 0.0
    # 55 % winners at 1:1 -> full Kelly 0.10, a quarter is 0.025 -> capped 0.02; 52 % -> 0.01.
    assert kelly_fraction([StrategyTrackRecord(sharpe=1, win_rate=0.52, payoff=1.0, trades=100)], 9.0) == 0.01
    # Too few trades is no record at all.
    assert performance_factor(StrategyTrackRecord(sharpe=3, win_rate=0.9, payoff=2, trades=5)) == 1.0
    assert performance_factor(StrategyTrackRecord(sharpe=3, win_rate=0.9, payoff=2, trades=50)) == 2.0
    assert performance_factor(poor) == 0.75


def test_signal_habits_count_onsets_and_flips_not_active_candles() -> None:
    from nodes.strategy import signal_habits

    steady_trend = pd.Series([0] * 250 + [1] * 50)
    recent, historical, flips = signal_habits(steady_trend)
    assert recent == pytest.approx(1 / 50) and historical == pytest.approx(1 / 300) and flips == 0
    nervous = pd.Series([0] * 290 + [1, -1, 1, -1, 0, 1, 0, -1, 1, 0])
    assert signal_habits(nervous)[2] == 6  # sides 1,-1,1,-1,1,-1,1: six changes


def test_verification_flags_a_strategy_off_its_habits() -> None:
    from nodes.verify import anomaly_checks
    from state.sections import Signal

    def signal(name: str, recent: float, historical: float, flips: int) -> Signal:
        return Signal(as_of=NOW, produced_by=name, strategy=name, version="1", kind="momentum", direction="LONG", confidence=0.7,
                      timeframe="1h", rationale="-", recent_rate=recent, historical_rate=historical, recent_flips=flips)

    agreeing = consensus("LONG", 100, 95, 110).model_copy(update={"agreeing": ["calm", "hyper", "nervous"]})
    signals = {"calm": signal("calm", 0.02, 0.02, 0), "hyper": signal("hyper", 0.30, 0.02, 0), "nervous": signal("nervous", 0.02, 0.02, 4)}
    failing = [c.name for c in failed_checks(anomaly_checks(agreeing, signals))]
    assert failing == ["signal_rate:hyper", "flip_flop:nervous"]


def test_historical_analogs_far_below_the_norm_fail_verification() -> None:
    from nodes.verify import analog_check
    from state.sections import Signal

    def signal(trades: int, rate: float | None, norm: float | None) -> Signal:
        return Signal(as_of=NOW, produced_by="s", strategy="s", version="1", kind="momentum", direction="LONG", confidence=0.7,
                      timeframe="1h", rationale="-", analog_trades=trades, analog_win_rate=rate, overall_win_rate=norm)

    assert analog_check("s", signal(8, 0.50, 0.55)).passed is True
    assert analog_check("s", signal(8, 0.20, 0.55)).passed is False
    assert analog_check("s", signal(3, 0.00, 0.55)).passed is None  # too few to judge
    assert analog_check("s", signal(8, 0.20, None)).passed is None


async def test_analogs_come_from_backtesting_the_strategys_own_history() -> None:
    from nodes.strategy import analogs
    from nodes.strategies import registered_strategies
    from tools.indicators import enrich
    from tools.market_data.builtin import BuiltinSource

    frame = enrich(BuiltinSource("volatile").candles("SOL/USDT", "1h", until=NOW, limit=300))
    signals = registered_strategies()["ema_trend"].evaluate(frame)
    longs, long_rate, overall = analogs(frame, signals, 1, 0.001, 5)
    shorts, short_rate, _ = analogs(frame, signals, -1, 0.001, 5)
    assert longs + shorts > 0 and 0.0 <= (overall or 0.0) <= 1.0
    if longs and shorts and long_rate is not None and short_rate is not None:
        # The overall rate is the trade-weighted mix of the two sides.
        assert overall == pytest.approx((long_rate * longs + short_rate * shorts) / (longs + shorts))


def test_each_agreeing_signal_is_validated_on_its_own() -> None:
    from state.sections import Signal

    bad = Signal(as_of=NOW, produced_by="x", strategy="x", version="1", kind="momentum", direction="LONG", confidence=0.6,
                 entry=100, stop=104, targets=[110], timeframe="1h", rationale="stop above a long entry")
    assert [c.name for c in failed_checks(signal_checks(bad))] == ["stop_side", "reward_risk"]


def agg_signal(name: str, kind: str, direction: str, confidence: float) -> "Signal":
    from state.sections import Signal

    return Signal(as_of=NOW, produced_by=name, strategy=name, version="1", kind=kind, direction=direction, confidence=confidence,
                  entry=100, stop=95, targets=[110], timeframe="1h", rationale="figures 1")


def test_aggregator_weights_follow_the_regime() -> None:
    from nodes.aggregate import weigh

    signals = {"trend": agg_signal("trend", "momentum", "LONG", 0.8), "fade": agg_signal("fade", "oscillator", "SHORT", 0.8)}
    trending = weigh(signals, "TRENDING_UP", {})
    ranging = weigh(signals, "RANGING", {})
    assert trending[0] == {"trend": 1.5, "fade": 0.5} and trending[2] == pytest.approx((1.2 - 0.4) / 2.0)
    assert ranging[0] == {"trend": 0.5, "fade": 1.5} and ranging[2] == pytest.approx((0.4 - 1.2) / 2.0)
    # A strong track record doubles a strategy's say.
    assert weigh(signals, "RANGING", {"trend": 2.0})[0]["trend"] == 1.0


@pytest.mark.parametrize(
    "signals,direction,reason",
    [
        ([("a", "LONG", 0.8), ("b", "LONG", 0.7), ("c", "FLAT", 0.0)], "LONG", "2 strategies agree"),
        ([("a", "LONG", 0.9), ("b", "FLAT", 0.0)], "FLAT", "only 1 strategy for LONG"),
        ([("a", "LONG", 0.8), ("b", "LONG", 0.8), ("c", "SHORT", 0.6)], "FLAT", "strong signals disagree"),
        ([("a", "LONG", 0.3), ("b", "FLAT", 0.0), ("c", "FLAT", 0.0), ("d", "FLAT", 0.0)], "FLAT", "no edge"),
        ([], "FLAT", "no strategy produced a usable signal"),
    ],
)
def test_aggregator_conflict_and_two_agree_rules(signals, direction: str, reason: str) -> None:
    from nodes.aggregate import verdict, weigh

    healthy = {n: agg_signal(n, "momentum", d, c) for n, d, c in signals}
    net = weigh(healthy, "TRENDING_UP", {})[2]
    got_direction, got_reason = verdict(healthy, net)
    assert got_direction == direction and reason in got_reason


async def test_track_records_are_reread_once_their_time_to_live_has_passed() -> None:
    """A scan reads its strategies' records once a minute, not once per symbol; a newly recorded backtest counts after that."""
    from langgraph.store.memory import InMemoryStore

    from nodes.aggregate import TRACK_RECORD_NAMESPACE, TRACK_RECORD_TTL, track_records
    from state.sections import StrategyTrackRecord
    from tools.ttl_cache import TtlCache

    def signal(name: str) -> Signal:
        return Signal(as_of=NOW, produced_by="strategy", strategy=name, version="1", kind="momentum", direction="LONG", confidence=0.5, timeframe="1h", rationale="test")

    store, now = InMemoryStore(), [0.0]
    cache = TtlCache(clock=lambda: now[0])
    first = StrategyTrackRecord(sharpe=1.0, win_rate=0.5, payoff=1.5, trades=40)
    await store.aput(TRACK_RECORD_NAMESPACE, "a@1", first.model_dump())
    signals = {"a": signal("a"), "b": signal("b")}
    assert await track_records(store, signals, cache) == {"a": first}
    # Recorded meanwhile: a record for b, a new one for a. Within the TTL the process still weighs the ones it read.
    second = first.model_copy(update={"sharpe": 2.0})
    await store.aput(TRACK_RECORD_NAMESPACE, "a@1", second.model_dump())
    await store.aput(TRACK_RECORD_NAMESPACE, "b@1", second.model_dump())
    assert await track_records(store, signals, cache) == {"a": first}
    assert await track_records(store, signals) == {"a": second, "b": second}  # no cache: read now
    now[0] += TRACK_RECORD_TTL
    assert await track_records(store, signals, cache) == {"a": second, "b": second}
