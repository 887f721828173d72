"""The built-in source's fast paths give exactly what their plain forms give (tools/market_data/*).

Refinement runs many parents per call and caches them in blocks, a window refines ahead for the
timeframes above it, the weekly root walks its regimes run by run and draws wicks and volume only
for the weeks asked for, and frames share their time index: none of it may change a single bit.
"""

from __future__ import annotations

import bisect
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from tools.market_data import builtin, synthetic
from tools.market_data.builtin import BuiltinSource
from tools.market_data.synthetic import GEN_S, WEEK, Bars, gauss, keys, refine, uniform

CLOCK = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)
TFS = ("1w", "1d", "4h", "1h", "15m", "5m", "30m", "1m")


def same(a: Bars, b: Bars) -> bool:
    return all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


def plain_root(prof: synthetic.Profile, weeks: int) -> Bars:
    """The weekly root as first written: one regime draw and one pull per loop step."""
    t = GEN_S + WEEK * np.arange(weeks, dtype=np.int64)
    u = uniform(keys(prof.seed, 0, t), 3)
    z, switch = gauss(u[:, :2])[:, 0].tolist(), u[:, 2].tolist()
    logc, mult = [0.0] * weeks, [0.0] * weeks
    base = lp = level = math.log(prof.base)
    regime = 2
    for i in range(weeks):
        new = bisect.bisect_left(builtin._TRANS[regime], switch[i])
        if new == 2 and regime != 2:
            level = lp
        regime = min(new, 3)
        drift, m = builtin._REGIME[regime]
        dev = lp - base
        pull = -0.02 * dev - 0.15 * max(abs(dev) - 0.8, 0.0) * math.copysign(1.0, dev)
        if regime == 2:
            pull -= 0.35 * (lp - level)
        lp += prof.sigma * (drift + m * z[i]) + pull
        logc[i], mult[i] = lp, m
    return builtin._weekly_bars(prof, t, prof.base, np.array(logc), np.array(mult))


@pytest.mark.parametrize("weeks", [1, 2, 53, 1456])
def test_root_is_the_plain_loop(weeks: int) -> None:
    for i in range(40):
        prof = builtin._profile(f"ROOT{i}/USDT" if i % 3 else f"SYN{i:04d}/USDT")
        assert same(builtin._natural_root(prof, weeks), plain_root(prof, weeks))


def test_refining_a_run_is_refining_each_parent() -> None:
    market = builtin._natural("RUN/USDT", 1456)
    for tf, parent_tf in (("1d", "1w"), ("1h", "4h"), ("5m", "15m")):
        n, p = synthetic.step(parent_tf) // synthetic.step(tf), synthetic.step(parent_tf)
        last = synthetic.floor(int(CLOCK.timestamp()), parent_tf) - 40 * p
        parents = market.window(parent_tf, last - 99 * p, last)
        whole = refine(parents, n, synthetic.step(tf), market.prof.seed)
        for size in (1, 7, 16, 33):
            chunks = (Bars(*(x[k : k + size] for x in parents)) for k in range(0, 100, size))
            parts = [refine(chunk, n, synthetic.step(tf), market.prof.seed) for chunk in chunks]
            assert same(whole, synthetic.concat(parts)), (tf, size)


def test_cold_warm_and_out_of_order_requests_agree() -> None:
    def frames(order: tuple[str, ...]) -> dict[str, bytes]:
        src = BuiltinSource()
        return {tf: src.candles("ORDER/USDT", tf, until=CLOCK, limit=500).to_numpy().tobytes() for tf in order}

    builtin._NATURAL.clear()
    cold = frames(TFS)
    builtin._NATURAL.clear()
    assert frames(TFS[::-1]) == cold
    assert frames(TFS) == cold  # warm


def test_frames_share_no_mutable_state() -> None:
    src = BuiltinSource()
    a, b = (src.candles(s, "1h", until=CLOCK, limit=50) for s in ("A/USDT", "B/USDT"))
    assert a.index.equals(b.index) and a.index is not b.index and a.columns is not b.columns
    a.index.name, a.columns.name = "renamed", "renamed"
    a.iloc[0, 0] = -1.0
    assert b.index.name == "time" and b.columns.name is None and b.iloc[0, 0] > 0
    assert str(b.index.dtype) == "datetime64[ns, UTC]" and all(b.dtypes == np.float64)
    assert src.candles("B/USDT", "1h", until=CLOCK, limit=50).equals(b)


def plain_window(market: synthetic.Market, tf: str, a: int, b: int) -> Bars:
    """A natural market's window refined straight down from the root: no blocks, caches or look-ahead."""
    p = synthetic.step(tf)
    if tf == "1w":
        i = (a - GEN_S) // WEEK
        return Bars(*(x[i : i + (b - a) // p + 1] for x in builtin._natural_root(market.prof, len(market.root.t))))
    if tf == "30m":
        return synthetic.aggregate(plain_window(market, "15m", a, b + 900), 2)
    parent = synthetic._PARENT[tf]
    pa, pb = synthetic.floor(a, parent), synthetic.floor(b, parent)
    kids = refine(plain_window(market, parent, pa, pb), synthetic.step(parent) // p, p, market.prof.seed)
    i = (a - pa) // p
    return Bars(*(x[i : i + (b - a) // p + 1] for x in kids))


@pytest.mark.parametrize("limit", [300, 1, 17, 1200])
def test_frame_sets_are_the_plain_refinement(limit: int) -> None:
    """Asked smallest timeframe first (as a frame set is), or in any order: windows are the plain ones."""
    rng = np.random.default_rng(limit)
    for i in range(6):
        clock = datetime.fromtimestamp(int(CLOCK.timestamp()) - 60 * int(rng.integers(0, 400 * 24 * 60)), UTC)
        order = ("5m", "15m", "1h", "4h", "1d", "1w", "30m", "1m") if i % 2 else tuple(rng.permutation(TFS))
        src, symbol = BuiltinSource(), f"PLAIN{limit}_{i}/USDT"
        for tf in order:
            frame = src.candles(symbol, tf, until=clock, limit=limit)
            b = int(frame.index[-1].timestamp())
            a = b - (limit - 1) * synthetic.step(tf)
            want = plain_window(builtin._natural(symbol, 1), tf, a, b)
            assert frame.to_numpy().tobytes() == np.stack(want[1:]).T.tobytes(), (limit, i, tf)
            assert (frame.index.asi8 // 1_000_000_000).tobytes() == want.t.tobytes()


def test_a_frame_set_refines_each_timeframe_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(par: Bars, n: int, child_step: int, seed: int) -> Bars:
        calls.append(child_step)
        return refine(par, n, child_step, seed)

    monkeypatch.setattr(synthetic, "refine", counted)
    src = BuiltinSource()
    for i in range(20):
        calls.clear()
        clock = datetime.fromtimestamp(int(CLOCK.timestamp()) - 3_607 * 97 * i, UTC)
        for tf in ("5m", "15m", "1h", "4h", "1d", "1w"):
            src.candles(f"ONCE{i}/USDT", tf, until=clock, limit=300)
        assert sorted(calls) == [300, 900, 3600, 14400, 86400], (i, calls)


@pytest.mark.parametrize("scenario", ["uptrend", "crash"])
def test_scenario_frames_do_not_depend_on_order(scenario: str) -> None:
    def frames(order: tuple[str, ...]) -> dict[str, bytes]:
        src = BuiltinSource(scenario)
        return {tf: src.candles("ORDER/USDT", tf, until=CLOCK, limit=300).to_numpy().tobytes() for tf in order}

    builtin._SCENARIO.clear()
    bottom_up = frames(("5m", "15m", "30m", "1h", "4h", "1d", "1w", "1m"))
    builtin._SCENARIO.clear()
    assert frames(TFS) == bottom_up  # top down, cold
    assert frames(TFS[::-1]) == bottom_up  # warm


def test_weeks_drawn_as_asked_are_the_whole_root() -> None:
    rng = np.random.default_rng(5)
    for i in range(12):
        market = builtin._NaturalMarket(builtin._profile(f"LAZY{i}/USDT"), 1404)
        whole = builtin._natural_root(market.prof, 1404)
        for _ in range(6):
            j = int(rng.integers(0, 1404))
            k = int(rng.integers(j, min(j + 400, 1404)))
            assert same(market.window("1w", GEN_S + j * WEEK, GEN_S + k * WEEK), Bars(*(x[j : k + 1] for x in whole)))
        assert same(market.window("1w", GEN_S, GEN_S + 1403 * WEEK), whole)
