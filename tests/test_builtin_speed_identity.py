"""The built-in source's fast paths give exactly what their plain forms give (tools/market_data/*).

Refinement runs many parents per call, in place and on flat indexes, and caches them in blocks, a
window refines ahead for the timeframes above it, the weekly root walks its regimes run by run and
draws wicks and volume only for the weeks asked for, and frames share their time index: none of it
may change a single bit. The kernel is checked against its formulas one parent at a time, on edge
parents (flat, walls, dojis) as well as on markets.
"""

from __future__ import annotations

import bisect
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from tools.market_data import builtin, natural, synthetic
from tools.market_data import market as market_module
from tools.market_data.builtin import BuiltinSource
from tools.market_data.market import Market, floor, step
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
        new = bisect.bisect_left(natural.TRANS[regime], switch[i])
        if new == 2 and regime != 2:
            level = lp
        regime = min(new, 3)
        drift, m = natural.REGIME[regime]
        dev = lp - base
        pull = -0.02 * dev - 0.15 * max(abs(dev) - 0.8, 0.0) * math.copysign(1.0, dev)
        if regime == 2:
            pull -= 0.35 * (lp - level)
        lp += prof.sigma * (drift + m * z[i]) + pull
        logc[i], mult[i] = lp, m
    return natural.weekly_bars(prof, t, prof.base, np.array(logc), np.array(mult))


@pytest.mark.parametrize("weeks", [1, 2, 53, 1456])
def test_root_is_the_plain_loop(weeks: int) -> None:
    for i in range(40):
        prof = natural.profile(f"ROOT{i}/USDT" if i % 3 else f"SYN{i:04d}/USDT")
        assert same(natural.natural_root(prof, weeks), plain_root(prof, weeks))


def test_refining_a_run_is_refining_each_parent() -> None:
    market = builtin._natural("RUN/USDT", 1456)
    for tf, parent_tf in (("1d", "1w"), ("1h", "4h"), ("5m", "15m")):
        n, p = step(parent_tf) // step(tf), step(parent_tf)
        last = floor(int(CLOCK.timestamp()), parent_tf) - 40 * p
        parents = market.window(parent_tf, last - 99 * p, last)
        whole = refine(parents, n, step(tf), market.prof.seed)
        for size in (1, 7, 16, 33):
            chunks = (Bars(*(x[k : k + size] for x in parents)) for k in range(0, 100, size))
            parts = [refine(chunk, n, step(tf), market.prof.seed) for chunk in chunks]
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


def plain_window(market: Market, tf: str, a: int, b: int) -> Bars:
    """A natural market's window refined straight down from the root: no blocks, caches or look-ahead."""
    p = step(tf)
    if tf == "1w":
        i = (a - GEN_S) // WEEK
        return Bars(*(x[i : i + (b - a) // p + 1] for x in natural.natural_root(market.prof, len(market.root.t))))
    if tf == "30m":
        return synthetic.aggregate(plain_window(market, "15m", a, b + 900), 2)
    parent = market_module._PARENT[tf]
    pa, pb = floor(a, parent), floor(b, parent)
    kids = refine(plain_window(market, parent, pa, pb), step(parent) // p, p, market.prof.seed)
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
            a = b - (limit - 1) * step(tf)
            want = plain_window(builtin._natural(symbol, 1), tf, a, b)
            assert frame.to_numpy().tobytes() == np.stack(want[1:]).T.tobytes(), (limit, i, tf)
            assert (frame.index.asi8 // 1_000_000_000).tobytes() == want.t.tobytes()


def test_a_frame_set_refines_each_timeframe_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(par: Bars, n: int, child_step: int, seed: int) -> Bars:
        calls.append(child_step)
        return refine(par, n, child_step, seed)

    monkeypatch.setattr(market_module, "refine", counted)
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
        market = natural.NaturalMarket(natural.profile(f"LAZY{i}/USDT"), 1404)
        whole = natural.natural_root(market.prof, 1404)
        for _ in range(6):
            j = int(rng.integers(0, 1404))
            k = int(rng.integers(j, min(j + 400, 1404)))
            assert same(market.window("1w", GEN_S + j * WEEK, GEN_S + k * WEEK), Bars(*(x[j : k + 1] for x in whole)))
        assert same(market.window("1w", GEN_S, GEN_S + 1403 * WEEK), whole)


def plain_children(par: Bars, k: int, n: int, child_step: int, u: np.ndarray) -> Bars:
    """Parent k's children by the formulas, one parent at a time, from its row of draws ``u``."""
    m, big = synthetic._SUB, n * synthetic._SUB
    noise = synthetic._NOISE
    t, o, h, low, c, v = (x[k] for x in par)
    gz = gauss(u[2 + 2 * n :])
    safe = h - low if h - low > 0 else 1.0
    xo, xc = (o - low) / safe, (c - low) / safe
    w = np.concatenate(([0.0], np.cumsum(gz[:big])))
    g = np.arange(big + 1) / big
    path = xo + (xc - xo) * g + (w - g * w[-1]) * (noise / math.sqrt(big))
    hi_e, lo_e = max(xo, xc), min(xo, xc)
    lo_wall, hi_wall = lo_e <= 0.0, hi_e >= 1.0
    if lo_wall and hi_wall:
        span = np.mod(path, 2.0)
        path = np.where(span > 1.0, 2.0 - span, span)
    elif lo_wall:
        path = np.abs(path)
    elif hi_wall:
        path = 1.0 - np.abs(1.0 - path)
    j_hi, j_lo = 1 + int(u[0] * (big - 1)), 1 + int(u[1] * (big - 1))
    if j_lo == j_hi:
        j_lo = j_hi % (big - 1) + 1
    i_hi = int(np.argmax(path))
    if path[i_hi] - hi_e <= 1e-9 and not hi_wall:
        path[j_hi], i_hi = hi_e + 0.1 * noise, j_hi
    i_lo = int(np.argmin(path))
    if lo_e - path[i_lo] <= 1e-9 and not lo_wall:
        path[j_lo], i_lo = lo_e - 0.1 * noise, j_lo
        if i_hi == j_lo:
            i_hi = int(np.argmax(path))
    if i_hi % m == 0 and 0 < i_hi < big:
        i_hi += 1
        path[i_hi] = path[i_hi - 1] + 1e-3 * noise
        if i_lo == i_hi:
            i_lo = int(np.argmin(path))
    if i_lo % m == 0 and 0 < i_lo < big:
        move = i_lo - 1 if i_lo + 1 == i_hi else i_lo + 1
        path[move], i_lo = path[i_lo] - 1e-3 * noise, move
    up = (1.0 - hi_e) / max(path[i_hi] - hi_e, 1e-12)
    down = lo_e / max(lo_e - path[i_lo], 1e-12)
    path = np.where(path > hi_e, hi_e + (path - hi_e) * up, np.where(path < lo_e, lo_e - (lo_e - path) * down, path))
    px = np.minimum(np.maximum(path * safe + low, low), h)
    px[0], px[-1] = o, c
    wick = (synthetic._WICK * noise / math.sqrt(n)) * safe * -np.log(u[2 : 2 + 2 * n].reshape(2, n))
    segments = [px[i * m : (i + 1) * m + (1 if i == n - 1 else 0)] for i in range(n)]
    top = np.maximum([s.max() for s in segments], px[m::m])
    bot = np.minimum([s.min() for s in segments], px[m::m])
    room_h, room_l = np.maximum(0.9 * (h - top), 1e-300), np.maximum(0.9 * (bot - low), 1e-300)
    ch = top + room_h * -np.expm1(-wick[0] / room_h)
    cl = bot - room_l * -np.expm1(-wick[1] / room_l)
    ch[min(i_hi // m, n - 1)], cl[min(i_lo // m, n - 1)] = h, low
    ct = t + child_step * np.arange(n)
    wt = (0.15 + (ch - cl) / safe) * synthetic._SEASON[(ct // 3600 + 72) % 168] * np.exp(0.3 * gz[big : big + n])
    return Bars(ct, px[:-m:m], ch, cl, px[m::m], v * (wt / wt.sum()))


def plain_refine(par: Bars, n: int, child_step: int, seed: int) -> Bars:
    u = uniform(keys(seed, child_step, par.t), 2 + 2 * n + 2 * (n * synthetic._SUB + n))
    return synthetic.concat([plain_children(par, k, n, child_step, u[k]) for k in range(len(par.t))])


def edge_parents(rng: np.random.Generator, p: int, step_s: int) -> Bars:
    """Random parents, a third of them on an edge: flat, or opening/closing at the high or low."""
    t = GEN_S + 20 * WEEK + step_s * np.arange(p, dtype=np.int64) + int(rng.integers(0, 500)) * step_s
    o = np.exp(rng.normal(0.0, 2.0, p))
    c = o * np.exp(rng.normal(0.0, 0.05, p))
    h = np.maximum(o, c) * np.exp(rng.exponential(0.02, p))
    low = np.minimum(o, c) * np.exp(-rng.exponential(0.02, p))
    kind = rng.integers(0, 9, p)
    h = np.where(kind == 0, np.maximum(o, c), h)  # the open or close is the high
    low = np.where(kind == 1, np.minimum(o, c), low)
    both = kind == 2  # a wall on each side
    h, low = np.where(both, np.maximum(o, c), h), np.where(both, np.minimum(o, c), low)
    flat = kind == 3
    o, h, low, c = (np.where(flat, o, x) for x in (o, h, low, c))
    c = np.where(kind == 4, o, c)  # a doji
    h = np.where(kind == 5, np.nextafter(np.maximum(o, c), np.inf), h)  # a high a hair above
    return Bars(t, o, h, low, c, rng.exponential(1e6, p))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 2])
def test_refine_is_the_plain_formulas(n: int) -> None:
    """The batched, in-place kernel against the formulas one parent at a time: every bit of every child."""
    rng = np.random.default_rng(n)
    for p in (1, 2, 17, 60, 64, 80, 112, 250):
        step_s = 900 * n
        par = edge_parents(rng, p, step_s)
        for seed in (1, int(rng.integers(0, 2**63))):
            assert same(refine(par, n, step_s // n, seed), plain_refine(par, n, step_s // n, seed)), (n, p, seed)


def test_refine_is_the_plain_formulas_on_markets() -> None:
    for i in range(4):
        market = builtin._natural(f"KERNEL{i}/USDT", 1456)
        for tf, parent_tf in (("1d", "1w"), ("4h", "1d"), ("1h", "4h"), ("15m", "1h"), ("5m", "15m"), ("1m", "5m")):
            p = step(parent_tf)
            last = floor(int(CLOCK.timestamp()), parent_tf) - 3 * p
            parents = market.window(parent_tf, last - 63 * p, last)
            want = plain_refine(parents, p // step(tf), step(tf), market.prof.seed)
            assert same(refine(parents, p // step(tf), step(tf), market.prof.seed), want), (i, tf)


def test_draws_are_the_plain_splitmix() -> None:
    """Keys (their times' half shared between calls) and uniforms against splitmix64 in Python ints."""
    rng = np.random.default_rng(11)
    mask, mix = (1 << 64) - 1, synthetic._mix_int
    for size in (1, 3, 300, 5000, 300):
        t = GEN_S + 300 * np.sort(rng.choice(10**7, size, replace=False)).astype(np.int64)
        for seed, stream in ((0, 0), (2**64 - 1, 86400), (int(rng.integers(0, 2**63)), 1)):
            salt = mix(seed ^ (stream * 0x100000001B3))
            want = [mix(mix(int(x)) ^ salt) for x in t]
            got = keys(seed, stream, t)
            assert got.tolist() == want
            got[:] = 0  # the caller owns what it gets: the shared half is untouched
            assert keys(seed, stream, t).tolist() == want
            hashes = np.array(want[:50], dtype=np.uint64)
            for row, h in zip(uniform(hashes, 5), want[:50], strict=True):
                plain = [((mix(h ^ ((k * 0x9E3779B97F4A7C15) & mask)) >> 11) + 0.5) * 2.0**-53 for k in range(1, 6)]
                assert row.tolist() == plain
