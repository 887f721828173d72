"""Markets: a weekly root (plus a 5m tail) that windows of any timeframe are cut from.

Every timeframe below the root is refined from its parent (1w->7x1d->6x4h->4x1h->4x15m->3x5m,
5m->5x1m; 30m is two 15m) by :func:`tools.market_data.synthetic.refine`. Parents are refined in
cached blocks of 16, consecutive missing blocks in one go: refinement is row-wise, so a block's
children are the same whichever run it was refined with.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache

from tools.market_data.synthetic import GEN_S, M5, WEEK, Bars, Profile, aggregate, concat, refine, remember
from tools.timeframes import period

_PARENT: dict[str, str] = {"1d": "1w", "4h": "1d", "1h": "4h", "15m": "1h", "5m": "15m", "1m": "5m"}
_BLOCK = 16  # parents cached together: small, so a window refines little it does not show
_BLOCKS_KEPT = 4096 // _BLOCK  # per market
_SPAN_MAX = 1_000  # candles a window's refinement reaches back at most in the timeframes above (see Market)


@cache  # a handful of timeframes, asked for at every level of every window
def step(tf: str) -> int:
    return int(period(tf).total_seconds())


def floor(x: int, tf: str) -> int:
    origin = GEN_S if tf == "1w" else 0
    return x - (x - origin) % step(tf)


class Market:
    """A root (plus a 5m tail for scenarios) and the refined blocks already cut from it.

    A frame set asks every timeframe for as many candles up to one clock, smallest first. So a window's
    refinement covers, in each timeframe above, what a window of as many candles would show: refine
    then runs once per timeframe, not two or three times.
    """

    def __init__(self, prof: Profile, root: Bars, tail: Bars | None = None) -> None:
        self.prof, self.root = prof, root
        self.t0 = int(tail.t[0]) if tail is not None else None
        # refinement never reads past the data that exists (the tail stops at `until`)
        self.end = int(tail.t[-1]) + M5 if tail is not None else int(root.t[-1]) + WEEK
        self._tails: dict[str, Bars] = {"5m": tail} if tail is not None else {}
        # a block is its children's offset into the run of children it was refined with
        self._blocks: OrderedDict[tuple[str, int], tuple[Bars, int]] = OrderedDict()

    def _weeks(self, reach: int, i: int, j: int) -> Bars:
        """Root weeks i..j-1 (a root drawn lazily has them ready from ``reach`` on)."""
        return Bars(*(x[i:j] for x in self.root))

    def _tail_bars(self, tf: str) -> Bars:
        if tf not in self._tails:
            self._tails[tf] = aggregate(self._tails["5m"], step(tf) // M5)
        return self._tails[tf]

    def _children(self, tf: str, reach: int, first: int, last: int, ahead: tuple[int, int]) -> Bars:
        """Children of parent blocks first..last (``_BLOCK`` parents each), refining missing ones from ``reach`` on."""
        found = {k: self._blocks.get((tf, k)) for k in range(reach, last + 1)}
        missing = [k for k, block in found.items() if block is None]
        while missing:
            # a run of missing blocks is refined in one call: refine is row-wise, so this
            # gives what they would one by one, for a fraction of numpy's per-call cost
            run = 1
            while run < len(missing) and missing[run] == missing[0] + run:
                run += 1
            found.update(zip(missing[:run], self._refine(tf, missing[0], run, ahead), strict=True))
            missing = missing[run:]
        blocks = [remember(self._blocks, (tf, k), found[k], _BLOCKS_KEPT) for k in range(reach, last + 1)]
        kids, at = blocks[first - reach]
        size = _BLOCK * step(_PARENT[tf]) // step(tf)
        if all(run is kids for run, _ in blocks[first - reach :]):  # refined together: no copy needed
            return Bars(*(x[at : at + (last - first + 1) * size] for x in kids))
        return concat([Bars(*(x[i : i + size] for x in run)) for run, i in blocks[first - reach :]])

    def _refine(self, tf: str, block: int, count: int, ahead: tuple[int, int]) -> list[tuple[Bars, int]]:
        pp = step(_PARENT[tf])
        n = pp // step(tf)
        pa = GEN_S + block * _BLOCK * pp
        pb = min(pa + (count * _BLOCK - 1) * pp, self.end - pp)
        kids = refine(self.window(_PARENT[tf], pa, pb, ahead=ahead), n, step(tf), self.prof.seed)
        size = _BLOCK * n
        if count <= 8:
            return [(kids, i * size) for i in range(count)]
        # a cached block keeps its whole run alive: a long run (a backtest's window) is cut into copies
        return [(Bars(*(x[i * size : (i + 1) * size].copy() for x in kids)), 0) for i in range(count)]

    def window(self, tf: str, a: int, b: int, *, ahead: tuple[int, int] | None = None) -> Bars:
        """Candles with open times a..b inclusive (both aligned to ``tf``); ``ahead`` is the (clock, count)
        of the windows to expect in the timeframes above (default: this one's), refined along with it."""
        p = step(tf)
        if self.t0 is not None and b >= self.t0 and tf != "1m":
            tail = self._tail_bars(tf)
            i, j = (max(a, self.t0) - self.t0) // p, (b - self.t0) // p + 1
            part = Bars(*(x[i:j] for x in tail))
            if a >= self.t0:
                return part
            return concat([self.window(tf, a, self.t0 - p, ahead=ahead), part])
        if tf == "1w":
            i = (a - GEN_S) // WEEK
            reach = i if ahead is None else min(i, (floor(ahead[0], tf) - GEN_S) // WEEK - ahead[1])
            return self._weeks(max(reach, 0), i, i + (b - a) // p + 1)
        if tf == "30m":
            return aggregate(self.window("15m", a, b + 900), 2)
        if ahead is None:
            ahead = (b + p, min((b - a) // p + 1, _SPAN_MAX))
            reach = a
        else:  # the window of ``count`` candles of this timeframe closing by the clock starts here
            clock, count = ahead
            reach = max(min(a, floor(clock, tf) - count * p), GEN_S)
        pp = step(_PARENT[tf])
        reach, first, last = ((floor(x, _PARENT[tf]) - GEN_S) // pp // _BLOCK for x in (reach, a, b))
        kids = self._children(tf, reach, first, last, ahead)
        i = (a - int(kids.t[0])) // p
        return Bars(*(x[i : i + (b - a) // p + 1] for x in kids))
