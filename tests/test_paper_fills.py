"""Paper fills over hand-built candles: every expected number is worked out by hand in the test."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from state.portfolio import Position
from tools.brokers.base import BracketRequest
from tools.brokers.paper_fills import cancel_pending, open_bracket, simulate

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # the run's clock: the decision candle (23:00) has just closed
H = timedelta(hours=1)
FEE = 0.001
SLIP = 10.0  # bps
EPS = 1e-9


def candles(*rows: tuple[float, float, float, float], start: datetime = T0) -> pd.DataFrame:
    """Hourly candles (open, high, low, close) labelled by open time, from ``start``."""
    index = pd.DatetimeIndex([start + i * H for i in range(len(rows))], name="time")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index, dtype=float)
    frame["volume"] = 1.0
    return frame


def request(side: str = "buy", entry_type: str = "market", **over: object) -> BracketRequest:
    long = side == "buy"
    fields: dict[str, object] = {
        "bracket_id": "thr1-abc", "thread_id": "thr1", "symbol": "BTC/USDT", "side": side, "quantity": 2.0,
        "entry_type": entry_type, "reference_price": 100.0, "stop": 95.0 if long else 105.0,
        "target": 110.0 if long else 90.0, "as_of": T0, "risk_amount": 10.0,
        "strategies": ["breakout@1"], "tags": ["L1"],
    }
    if entry_type == "limit":
        fields["limit_price"] = 98.0 if long else 102.0
    fields.update(over)
    return BracketRequest(**fields)  # type: ignore[arg-type]


def opened(side: str = "buy", entry_type: str = "market", **over: object) -> Position:
    return open_bracket(request(side, entry_type, **over), fee_rate=FEE, slippage_bps=SLIP)


def sim(position: Position, frame: pd.DataFrame) -> Position:
    return simulate(position, frame, fee_rate=FEE, slippage_bps=SLIP)


def order(position: Position, role: str):
    (found,) = [o for o in position.orders if o.role == role]
    return found


# --- open_bracket ---------------------------------------------------------------------------------


def test_market_buy_fills_at_once_with_slippage_against_us_and_fee() -> None:
    p = opened("buy")
    fill = 100.0 * 1.001
    assert p.status == "open" and p.opened_at == T0 and p.created_at == T0
    assert p.entry_price == pytest.approx(fill, abs=EPS)
    assert p.fees == pytest.approx(fill * 2.0 * FEE, abs=EPS)
    entry = order(p, "entry")
    assert (entry.client_order_id, entry.type, entry.side, entry.status) == ("thr1-abc-entry", "market", "buy", "filled")
    assert entry.fill_price == pytest.approx(100.1, abs=EPS) and entry.fee == pytest.approx(0.2002, abs=EPS)
    assert entry.filled_at == T0
    sl, tp = order(p, "stop_loss"), order(p, "take_profit")
    assert (sl.client_order_id, sl.type, sl.side, sl.price, sl.status) == ("thr1-abc-sl", "stop", "sell", 95.0, "open")
    assert (tp.client_order_id, tp.type, tp.side, tp.price, tp.status) == ("thr1-abc-tp", "limit", "sell", 110.0, "open")
    assert (p.thread_id, p.symbol, p.broker, p.strategies, p.tags, p.risk_amount) == (
        "thr1", "BTC/USDT", "paper", ["breakout@1"], ["L1"], 10.0)
    assert (p.stop, p.target, p.quantity) == (95.0, 110.0, 2.0)


def test_market_sell_fills_below_the_reference() -> None:
    p = opened("sell")
    assert p.entry_price == pytest.approx(99.9, abs=EPS)
    assert p.fees == pytest.approx(99.9 * 2.0 * FEE, abs=EPS)
    assert order(p, "stop_loss").side == order(p, "take_profit").side == "buy"


def test_limit_entry_rests_as_pending() -> None:
    p = opened("buy", "limit")
    assert p.status == "pending" and p.entry_price is None and p.opened_at is None and p.fees == 0.0
    assert p.limit_price == 98.0
    entry = order(p, "entry")
    assert (entry.type, entry.price, entry.status, entry.fill_price) == ("limit", 98.0, "open", None)
    assert {o.status for o in p.orders} == {"open"}


# --- limit entries --------------------------------------------------------------------------------


def test_limit_buy_waits_then_fills_at_the_limit_on_a_later_candle() -> None:
    p = opened("buy", "limit")
    p = sim(p, candles((100, 101, 98.5, 100)))  # low 98.5 > limit 98: no fill
    assert p.status == "pending" and p.unrealized_pnl is None
    assert p.mark_price == 100 and p.marked_at == T0
    p = sim(p, candles((100, 101, 98.5, 100), (99, 100, 97, 99.5)))
    assert p.status == "open" and p.opened_at == T0 + H
    assert p.entry_price == 98.0  # a limit: no slippage
    assert p.fees == pytest.approx(98.0 * 2 * FEE, abs=EPS)
    entry = order(p, "entry")
    assert (entry.status, entry.fill_price, entry.filled_at) == ("filled", 98.0, T0 + H)
    assert p.unrealized_pnl == pytest.approx((99.5 - 98.0) * 2 - 0.196, abs=EPS)


def test_limit_buy_gapping_through_fills_at_the_better_open() -> None:
    p = sim(opened("buy", "limit"), candles((97, 99, 96, 98.5)))
    assert p.status == "open" and p.entry_price == 97.0
    assert order(p, "entry").fee == pytest.approx(97.0 * 2 * FEE, abs=EPS)


def test_limit_sell_fills_at_limit_and_at_a_gap_open() -> None:
    p = sim(opened("sell", "limit"), candles((100, 102.5, 99, 101)))
    assert p.status == "open" and p.entry_price == 102.0
    p = sim(opened("sell", "limit"), candles((103, 104, 101, 102)))
    assert p.status == "open" and p.entry_price == 103.0


def test_limit_fill_and_stop_in_the_same_candle_closes_at_the_stop() -> None:
    p = sim(opened("buy", "limit"), candles((100, 101, 94, 96)))  # down through 98, then through 95
    assert p.status == "closed" and p.exit_reason == "stop"
    assert p.opened_at == p.closed_at == T0
    assert p.exit_price == pytest.approx(95 * 0.999, abs=EPS)


def test_limit_fill_mid_candle_credits_the_target_only_if_the_close_proves_it() -> None:
    # The high (111) may have printed before the dip to 98: not proof the target filled after the entry.
    p = sim(opened("buy", "limit"), candles((100, 111, 97, 99)))
    assert p.status == "open" and p.entry_price == 98.0
    # Closing at 110.5 proves the price crossed 110 after the fill at 98.
    p = sim(opened("buy", "limit"), candles((100, 111, 97, 110.5)))
    assert p.status == "closed" and p.exit_reason == "target" and p.exit_price == 110.0


# --- long exits -----------------------------------------------------------------------------------


def test_long_stop_hit_fills_at_the_stop_minus_slippage() -> None:
    p = sim(opened("buy"), candles((100, 101, 99, 100), (99, 100, 94, 96)))
    assert p.status == "closed" and p.exit_reason == "stop" and p.closed_at == T0 + H
    assert p.exit_price == pytest.approx(95 * 0.999, abs=EPS)
    sl, tp = order(p, "stop_loss"), order(p, "take_profit")
    assert (sl.status, sl.filled_at, tp.status) == ("filled", T0 + H, "cancelled")
    assert sl.fill_price == pytest.approx(94.905, abs=EPS)
    assert sl.fee == pytest.approx(94.905 * 2 * FEE, abs=EPS)
    assert p.unrealized_pnl is None and p.mark_price == 96 and p.marked_at == T0 + H


def test_long_target_hit_fills_at_the_target_without_slippage() -> None:
    p = sim(opened("buy"), candles((105, 111, 104, 109)))
    assert p.status == "closed" and p.exit_reason == "target" and p.exit_price == 110.0
    tp, sl = order(p, "take_profit"), order(p, "stop_loss")
    assert (tp.status, tp.fill_price, sl.status) == ("filled", 110.0, "cancelled")


def test_long_stop_and_target_in_one_candle_assumes_the_stop() -> None:
    p = sim(opened("buy"), candles((100, 112, 94, 108)))
    assert p.exit_reason == "stop" and p.exit_price == pytest.approx(94.905, abs=EPS)


def test_long_gap_below_the_stop_fills_at_the_open() -> None:
    p = sim(opened("buy"), candles((93, 96, 92, 95.5)))
    assert p.exit_reason == "stop" and p.exit_price == pytest.approx(93 * 0.999, abs=EPS)


def test_long_gap_above_the_target_fills_at_the_open() -> None:
    # The open is the first price: the target limit filled there, whatever the low did later.
    p = sim(opened("buy"), candles((112, 113, 90, 100)))
    assert p.exit_reason == "target" and p.exit_price == 112.0


def test_exits_stop_at_the_first_candle_that_hits() -> None:
    p = sim(opened("buy"), candles((100, 111, 99, 109), (100, 101, 90, 91)))
    assert p.exit_reason == "target" and p.closed_at == T0
    assert p.mark_price == 91 and p.marked_at == T0 + H  # later candles only move the mark


# --- short exits ----------------------------------------------------------------------------------


def test_short_stop_hit_fills_at_the_stop_plus_slippage() -> None:
    p = sim(opened("sell"), candles((100, 106, 99, 104)))
    assert p.exit_reason == "stop" and p.exit_price == pytest.approx(105 * 1.001, abs=EPS)
    assert order(p, "stop_loss").side == "buy" and order(p, "take_profit").status == "cancelled"


def test_short_target_hit() -> None:
    p = sim(opened("sell"), candles((95, 96, 89, 91)))
    assert p.exit_reason == "target" and p.exit_price == 90.0


def test_short_both_in_one_candle_assumes_the_stop() -> None:
    p = sim(opened("sell"), candles((100, 106, 89, 95)))
    assert p.exit_reason == "stop" and p.exit_price == pytest.approx(105.105, abs=EPS)


def test_short_gaps_fill_at_the_open() -> None:
    p = sim(opened("sell"), candles((107, 108, 106, 107)))
    assert p.exit_reason == "stop" and p.exit_price == pytest.approx(107 * 1.001, abs=EPS)
    p = sim(opened("sell"), candles((88, 89, 87, 88)))
    assert p.exit_reason == "target" and p.exit_price == 88.0


# --- P&L ------------------------------------------------------------------------------------------


def test_long_pnl_net_of_every_fee() -> None:
    p = opened("buy")  # entry 100.1, fee 0.2002
    mid = sim(p, candles((103, 105, 102, 104)))
    assert mid.unrealized_pnl == pytest.approx((104 - 100.1) * 2 - 0.2002, abs=EPS)  # 7.5998
    assert mid.unrealized_pnl == pytest.approx(7.5998, abs=EPS)
    done = sim(mid, candles((103, 105, 102, 104), (99, 100, 94, 96)))
    # exit 94.905, exit fee 0.18981; fees 0.39001; (94.905 - 100.1) * 2 = -10.39
    assert done.fees == pytest.approx(0.39001, abs=EPS)
    assert done.realized_pnl == pytest.approx(-10.78001, abs=EPS)
    assert done.unrealized_pnl is None


def test_short_pnl_net_of_every_fee() -> None:
    p = sim(opened("sell"), candles((95, 96, 89, 91)))  # entry 99.9, exit 90
    assert p.fees == pytest.approx(0.3798, abs=EPS)  # 0.1998 + 0.18
    assert p.realized_pnl == pytest.approx((99.9 - 90) * 2 - 0.3798, abs=EPS)
    assert p.realized_pnl == pytest.approx(19.4202, abs=EPS)


# --- candle time ----------------------------------------------------------------------------------


def test_candles_opening_before_created_at_are_history() -> None:
    # 22:00 and 23:00 traded through the stop before the bracket existed: they must not fill it.
    frame = candles((100, 101, 90, 92), (92, 93, 90, 100), (100, 102, 99, 101), start=T0 - 2 * H)
    p = sim(opened("buy"), frame)
    assert p.status == "open" and p.marked_at == T0 and p.mark_price == 101
    only_history = sim(opened("buy"), frame.iloc[:2])
    assert only_history == opened("buy")  # nothing new: unchanged, not even marked


def test_the_candle_opening_at_created_at_counts() -> None:
    p = sim(opened("buy"), candles((100, 101, 99, 100), (100, 101, 94, 96), start=T0 - H))
    assert p.status == "closed" and p.closed_at == T0


def test_simulate_is_idempotent_over_the_same_candles() -> None:
    # Fill at 98 mid-candle; the high (111) is not credited on the entry candle. Applying that candle
    # again to the now open position would wrongly take the target.
    frame = candles((100, 101, 99, 100), (100, 111, 97, 99))
    once = sim(opened("buy", "limit"), frame)
    assert once.status == "open" and once.marked_at == T0 + H
    assert sim(once, frame) == once


def test_overlapping_windows_match_one_pass() -> None:
    frame = candles((100, 101, 99, 100), (99, 100, 97, 99), (99, 104, 98, 103), (103, 108, 101, 107),
                    (107, 111, 106, 110.5))
    whole = sim(opened("buy", "limit"), frame)
    assert whole.exit_reason == "target" and whole.closed_at == T0 + 4 * H
    step = sim(sim(sim(opened("buy", "limit"), frame.iloc[:2]), frame.iloc[1:4]), frame.iloc[2:])
    assert step == whole


def test_nan_candles_are_skipped() -> None:
    frame = candles((100, 101, 99, 100), (math.nan, 120, math.nan, math.nan), (100, 102, 99, math.nan))
    p = sim(opened("buy"), frame)
    assert p.status == "open"  # the 120 high of a broken row never reaches the target
    assert p.mark_price == 100 and p.marked_at == T0  # the mark comes from the last whole candle
    assert p.unrealized_pnl == pytest.approx((100 - 100.1) * 2 - 0.2002, abs=EPS)


def test_finished_positions_and_empty_frames_are_returned_unchanged() -> None:
    closed = sim(opened("buy"), candles((100, 112, 94, 108)))
    later = candles((100, 120, 50, 60), start=T0 + 5 * H)
    assert sim(closed, later) == closed
    cancelled = cancel_pending(opened("buy", "limit"), reason="halt", at=T0)
    assert sim(cancelled, candles((90, 91, 80, 85))) == cancelled
    fresh = opened("buy")
    assert sim(fresh, candles()) == fresh


# --- cancel_pending -------------------------------------------------------------------------------


def test_cancel_pending_cancels_every_resting_order() -> None:
    at = T0 + 3 * H
    p = cancel_pending(opened("buy", "limit"), reason="rollback", at=at)
    assert (p.status, p.exit_reason, p.closed_at) == ("cancelled", "rollback", at)
    assert [o.status for o in p.orders] == ["cancelled"] * 3
    assert p.realized_pnl is None and p.entry_price is None


def test_cancel_leaves_an_open_position_and_its_protection_alone() -> None:
    p = opened("buy")
    assert cancel_pending(p, reason="halt", at=T0 + H) == p
    filled = sim(opened("buy", "limit"), candles((99, 100, 97, 99)))
    assert filled.status == "open"
    kept = cancel_pending(filled, reason="cancelled", at=T0 + 2 * H)
    assert kept == filled and order(kept, "stop_loss").status == "open"
