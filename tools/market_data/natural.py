"""Natural markets: a symbol's profile and its weekly root, from a fixed genesis (2000-01-03, a Monday).

A seeded Markov chain of regimes (up, down, range, volatile) drives the weekly log-returns, with a
slow pull to a per-symbol price level. Every other timeframe is refined from the root top-down
(:mod:`tools.market_data.market`).
"""

from __future__ import annotations

import bisect
import math
import re
from array import array

import numpy as np

from tools.market_data.market import Market
from tools.market_data.synthetic import GEN_S, WEEK, Bars, Profile, digest, gauss, keys, uniform


def profile(symbol: str) -> Profile:
    seed = digest("builtin", symbol)
    u = uniform(np.array([seed], dtype=np.uint64), 3)[0]
    base_asset = re.split(r"[/:\-_ ]", symbol.upper())[0]
    base_asset = re.sub(r"(USDT|USDC|BUSD|USD|EUR)$", "", base_asset) or base_asset
    if base_asset in {"BTC", "XBT", "WBTC"}:
        return Profile(seed, 25_000.0 * 2.5 ** u[0], 0.065 + 0.02 * u[1], 4e10)
    if base_asset in {"ETH", "WETH"}:
        return Profile(seed, 1_500.0 * 2.5 ** u[0], 0.08 + 0.02 * u[1], 2e10)
    price = math.exp(math.log(0.01) + u[0] * math.log(500 / 0.01))
    return Profile(seed, price, 0.09 + 0.08 * u[1], 10 ** (6.0 + 3.0 * u[2]))


# Regimes: 0 up, 1 down, 2 range, 3 volatile. (drift in sigmas, vol multiplier)
REGIME = ((0.3, 0.9), (-0.3, 1.0), (0.0, 0.55), (0.0, 1.9))
TRANS: list[list[float]] = np.cumsum(
    [[0.90, 0.02, 0.06, 0.02], [0.02, 0.88, 0.07, 0.03], [0.04, 0.04, 0.90, 0.02], [0.06, 0.06, 0.08, 0.80]],
    axis=1,
).tolist()


def weekly_bars(prof: Profile, t: np.ndarray, prev: float, logc: np.ndarray, mult: np.ndarray) -> Bars:
    """Wicks and volume for weekly closes; open = previous close keeps the path continuous."""
    u = uniform(keys(prof.seed, 1, t), 4)
    c = np.exp(logc)
    o = np.concatenate(([prev], c[:-1]))
    s = prof.sigma * mult
    h = np.maximum(o, c) * np.exp(s * (0.02 + 0.3 * -np.log(u[:, 0])))
    low = np.minimum(o, c) * np.exp(-s * (0.02 + 0.3 * -np.log(u[:, 1])))
    move = np.abs(np.log(c / o)) / s
    v = prof.turnover / c * mult * (0.5 + 0.6 * move) * np.exp(0.25 * gauss(u[:, 2:4])[:, 0])
    return Bars(t, o, h, low, c, v)


def _regime_runs(switch: np.ndarray) -> list[tuple[int, int, int]]:
    """The chain of regimes (each week's draw picks the next from the current), starting in range.

    As (regime, first week, end week) runs: regimes last ~10 weeks, so the walk jumps from one
    change to the next, with the weeks whose draw would leave each regime (and where to) found up front.
    """
    # regime r stays when min(bisect_left(TRANS[r], draw), 3) == r: a draw in (row[r-1], row[r]]
    bands = [(row[r - 1] if r else -1.0, row[r] if r < 3 else 2.0) for r, row in enumerate(TRANS)]
    leave = [np.flatnonzero((switch <= lo) | (switch > hi)) for lo, hi in bands]
    dest = [np.minimum(np.searchsorted(row, switch[w]), 3).tolist() for row, w in zip(TRANS, leave, strict=True)]
    leave_at = [weeks.tolist() for weeks in leave]
    runs, regime, first, draw, n = [], 2, 0, 0, len(switch)
    while True:
        # the regime holds from week `first` up to the first later draw that leaves it
        k = bisect.bisect_left(leave_at[regime], draw)
        end = leave_at[regime][k] if k < len(leave_at[regime]) else n
        if end > first:
            runs.append((regime, first, end))
        if end == n:
            return runs
        regime, first, draw = dest[regime][k], end, end + 1


def _log_closes(base: float, noise: np.ndarray, runs: list[tuple[int, int, int]]) -> np.ndarray:
    """Weekly log closes: regime drift and noise, plus the pull to the symbol's level.

    Sequential (the pull depends on the price so far), so kept lean: ``max(abs(dev) - 0.8, 0) *
    copysign(1, dev)`` is unrolled into branches giving the same floats (below 0.8, a signed zero).
    """
    lp = level = base
    # read and written as raw doubles: no list of floats built, and no list converted at the end
    steps, logc = memoryview(noise), array("d")
    append = logc.append
    for regime, first, end in runs:
        # a range forms around wherever the price is (at week 0 that is the level already)
        in_range, level = regime == 2, lp if regime == 2 else level
        for step_noise in steps[first:end]:
            dev = lp - base
            # slow pull to the symbol's level (harder beyond ~e^0.8) keeps prices plausible
            if dev > 0.8:
                pull = -0.02 * dev - 0.15 * (dev - 0.8)
            elif dev < -0.8:
                pull = -0.02 * dev + 0.15 * (-dev - 0.8)
            else:
                pull = -0.02 * dev
            if in_range:
                pull -= 0.35 * (lp - level)
            lp += step_noise + pull
            append(lp)
    return np.frombuffer(logc)


def _natural_closes(prof: Profile, weeks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open times, log closes and volatility multipliers of the weekly root."""
    t = GEN_S + WEEK * np.arange(weeks, dtype=np.int64)
    u = uniform(keys(prof.seed, 0, t), 3)
    runs = _regime_runs(u[:, 2])
    weeks_in = [end - first for _, first, end in runs]
    drift, mult = (np.repeat([REGIME[r][col] for r, _, _ in runs], weeks_in) for col in (0, 1))
    noise = prof.sigma * (drift + mult * gauss(u[:, :2])[:, 0])
    return t, _log_closes(math.log(prof.base), noise, runs), mult


def natural_root(prof: Profile, weeks: int) -> Bars:
    """The whole weekly root at once (a natural market draws it as asked: :class:`NaturalMarket`)."""
    t, logc, mult = _natural_closes(prof, weeks)
    return weekly_bars(prof, t, prof.base, logc, mult)


class NaturalMarket(Market):
    """A natural market whose weekly wicks and volume are drawn for the weeks asked for, latest first.

    Closes run from genesis, but a decision reads the last few hundred weeks only, and the wicks and
    volume of the rest are most of the root's cost. A week's depend on its close, the close before
    and its own draws alone, so drawing a run of weeks gives what drawing them all does.
    """

    def __init__(self, prof: Profile, weeks: int) -> None:
        t, self._logc, self._mult = _natural_closes(prof, weeks)
        super().__init__(prof, Bars(t, *(np.empty(weeks) for _ in range(5))))
        self._drawn = weeks  # weeks from here on are drawn

    def _weeks(self, reach: int, i: int, j: int) -> Bars:
        if i < self._drawn:
            first = min(reach, i)
            before = max(first - 1, 0)  # the week before gives the first one's open
            run = slice(before, self._drawn)
            drawn = weekly_bars(self.prof, self.root.t[run], self.prof.base, self._logc[run], self._mult[run])
            for whole, part in zip(self.root[1:], drawn[1:], strict=True):
                whole[first : self._drawn] = part[first - before :]
            self._drawn = first
        return super()._weeks(reach, i, j)
