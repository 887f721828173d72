"""Anchored VWAPs from the most significant recent swings, and a Gaussian-process projection of each.

Everything here is a pure function of a candle frame (columns high, low,
close, volume; any index). Nothing reads a candle after the one it reports
on: a VWAP is a running sum, and an anchor is a pivot that `tools.pivots`
has already confirmed, scored only from candles up to the pivot itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

from state.analysis import VwapProjection
from tools.pivots import PivotRows, left_prominence, pivot_rows
from tools.indicators import column_arrays

PIVOT_WIDTH = 3  # a pivot needs 3 candles on each side, so it is confirmed 3 candles later
LOOKBACK = 20  # candles before a pivot over which the move into it is measured (at most)
RECENT = 120  # only pivots among the newest RECENT candles are candidates
PER_KIND = 2  # anchors kept per kind: 2 swing highs and 2 swing lows
WINDOW = 60  # newest VWAP values the projection is fitted to
MIN_POINTS = 10  # fewer VWAP values than this: no projection, rather than a fit to noise
HORIZONS = (1, 3, 6, 12)  # candles ahead
Z95 = 1.959964  # two-sided 95 % of a normal distribution

AnchorKind = Literal["swing_high", "swing_low"]


@dataclass(frozen=True)
class Anchor:
    position: int  # row of the pivot candle
    time: pd.Timestamp
    price: float  # the pivot's high (swing_high) or low (swing_low)
    kind: AnchorKind
    significance: float  # see `pivot_significance`


@dataclass(frozen=True)
class Candles:
    """The columns anchors and VWAPs read, taken out once: pandas access costs more than the maths."""

    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    index: pd.Index

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Candles:
        return cls(*column_arrays(frame, "high", "low", "close", "volume"), frame.index)

    def vwap(self, anchor_position: int) -> np.ndarray:
        """See `anchored_vwap`."""
        n = len(self.close)
        if not 0 <= anchor_position < n:
            raise ValueError(f"anchor position {anchor_position} outside a frame of {n} candles")
        out = np.full(n, np.nan)
        # Running sums: the value at t never depends on a candle after t.
        price_volume = np.cumsum(self.typical_volume[anchor_position:])
        cum_volume = np.cumsum(self.volume[anchor_position:])
        np.divide(price_volume, cum_volume, out=out[anchor_position:], where=cum_volume > 0)
        return out

    @cached_property
    def typical_volume(self) -> np.ndarray:
        """Typical price (high + low + close) / 3 times volume, per candle: shared by every anchor."""
        return (self.high + self.low + self.close) / 3.0 * self.volume


def anchored_vwap(frame: pd.DataFrame, anchor_position: int) -> np.ndarray:
    """VWAP from the anchor candle onward, NaN before it.

    vwap[t] = sum(tp[i] * volume[i]) / sum(volume[i]) over anchor <= i <= t,
    with typical price tp = (high + low + close) / 3. While no volume has
    traded since the anchor the value is undefined and stays NaN.
    """
    return Candles.of(frame).vwap(anchor_position)


def pivot_significance(frame: pd.DataFrame, width: int = PIVOT_WIDTH, lookback: int = LOOKBACK) -> list[Anchor]:
    """Every confirmed swing pivot of the frame, scored by the move that built it (its left prominence).

    For a swing high at row p: let q be the latest row in [p - lookback, p)
    whose high is >= high[p] (price was last at this level there), or
    p - lookback (clipped at 0) if there is none; the move is
    high[p] - min(low[q+1 .. p]) (from p - lookback itself when there is no q).
    A swing low mirrors it: q is the latest row with low <= low[p] and the move
    is max(high[q+1 .. p]) - low[p]. The significance is that move divided by the
    mean true range of rows max(0, p - lookback) .. p (0 if that is 0): how many
    average candles price travelled to reach a level it had not seen since q.
    A minor pullback just after a big swing therefore scores small, not the big
    swing's size. No candle after p is used, so a score never changes once the
    pivot is confirmed (at p + width).
    """
    candles = Candles.of(frame)
    rows = pivot_rows(candles.high, candles.low, width)
    scores = left_prominence(candles.high, candles.low, candles.close, rows, lookback)
    return _anchors(candles, rows, scores, np.arange(len(scores)))


def _anchors(candles: Candles, rows: PivotRows, scores: np.ndarray, which: np.ndarray) -> list[Anchor]:
    """Anchors of the pivots `which` (indices into `rows`), their times boxed in one call."""
    positions = rows.positions[which]
    times = list(candles.index[positions])
    kinds: list[AnchorKind] = ["swing_high" if high else "swing_low" for high in rows.is_high[which].tolist()]
    fields = (positions.tolist(), times, rows.prices[which].tolist(), kinds, scores[which].tolist())
    return [Anchor(*anchor) for anchor in zip(*fields, strict=True)]


def select_anchors(scored: list[Anchor], newest: int, recent: int = RECENT, per_kind: int = PER_KIND) -> list[Anchor]:
    """Of pivots at rows > newest - recent, the `per_kind` highest-scoring of each kind.

    Ties go to the more recent pivot. Highs come first, each kind in rank order.
    """
    chosen: list[Anchor] = []
    for kind in ("swing_high", "swing_low"):
        candidates = [a for a in scored if a.kind == kind and a.position > newest - recent]
        chosen += sorted(candidates, key=lambda a: (a.significance, a.position), reverse=True)[:per_kind]
    return chosen


def choose_anchors(
    frame: pd.DataFrame, width: int = PIVOT_WIDTH, recent: int = RECENT, per_kind: int = PER_KIND
) -> list[Anchor]:
    """The most significant recent swings: up to `per_kind` highs and lows (see `pivot_significance`)."""
    return choose_anchors_in(Candles.of(frame), width, recent, per_kind)


def choose_anchors_in(
    candles: Candles, width: int = PIVOT_WIDTH, recent: int = RECENT, per_kind: int = PER_KIND
) -> list[Anchor]:
    """`choose_anchors` on columns already taken out: only recent pivots are scored, and only the
    chosen become `Anchor`s (boxing every pivot's time cost more than choosing)."""
    newest = len(candles.close) - 1
    rows = pivot_rows(candles.high, candles.low, width, since=newest - recent + 1)
    scores = left_prominence(candles.high, candles.low, candles.close, rows, LOOKBACK)
    if np.isnan(scores).any():  # Python's sort has its own order for NaN keys: keep select_anchors' exactly
        return select_anchors(_anchors(candles, rows, scores, np.arange(len(scores))), newest, recent, per_kind)
    chosen = []
    for high in (True, False):  # as select_anchors: highs first, by significance then recency, descending
        of_kind = np.flatnonzero(rows.is_high == high)
        ranked = of_kind[np.lexsort((rows.positions[of_kind], scores[of_kind]))[::-1]]
        chosen.append(ranked[:per_kind])
    return _anchors(candles, rows, scores, np.concatenate(chosen))


LENGTH_SCALES = (0.04, 0.08, 0.16)  # RBF, in window units: about 2.4, 5 and 10 candles
TREND_RATIOS = (1e-3, 30.0, 1000.0)  # weight of the linear term relative to the RBF amplitude: ~none to dominant
NOISE_RATIOS = (1e-3, 1e-2, 1e-1)  # white noise relative to the RBF amplitude
# The grid covers what a finer one (8 x 10 x 6) chose on 188 VWAPs of the built-in scenarios
# (mostly 3-6 candle length scales, trends either absent or dominant) to within 0.6 nats of log likelihood on average.
SIGMA_0 = 1.0  # DotProduct offset: prior sd of the trend line's level at the last candle, relative to amplitude
KERNEL_FORM = (
    f"C*RBF + C*DotProduct(sigma_0={SIGMA_0:g}) + White, hyper-parameters by max marginal likelihood on a grid;"
    f" x = candles / {WINDOW}, y = VWAP / last VWAP, normalize_y; band = mean +/- 1.96 sd"
)


@dataclass(frozen=True)
class Hyper:
    """The projection kernel's hyper-parameters: amplitude * (RBF + trend * DotProduct + noise * White)."""

    amplitude: float
    length_scale: float
    trend: float  # the DotProduct term's weight relative to the amplitude
    noise: float  # the White term's weight relative to the amplitude

    def describe(self) -> str:
        """The kernel as sklearn writes it (its repr), so an audit reads the same as it always has.

        C*RBF for the VWAP's curvature + C*DotProduct for its drift + White for what neither
        explains: the RBF alone would pull any extrapolation back to the window's mean; the linear
        term lets a drifting VWAP keep drifting, with a band that widens with the distance.
        """
        return (
            f"{math.sqrt(self.amplitude):.3g}**2 * RBF(length_scale={self.length_scale:.3g})"
            f" + {math.sqrt(self.amplitude * self.trend):.3g}**2 * DotProduct(sigma_0={SIGMA_0:.3g})"
            f" + WhiteKernel(noise_level={self.amplitude * self.noise:.3g})"
        )


@lru_cache(maxsize=64)
def _inputs(n: int) -> np.ndarray:
    """x of n consecutive candles, the last at 0: (candle offset from the last one) / WINDOW, as a column. Read-only."""
    x = (np.arange(n, dtype=float) - (n - 1))[:, None] / WINDOW
    x.flags.writeable = False
    return x


@lru_cache(maxsize=64)  # one entry per window length (10..60 candles): ~16 MB at most
def _grid_factors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every grid shape S at n candles: L^-1 (L = cholesky(S)) and log det S. Read-only.

    A shape depends on n alone (x is fixed by it), never on the VWAP, so its factor is computed once
    per n and each fit is left with one batched product (`_max_likelihood`).
    """
    # Imported here: scipy.linalg costs ~0.1 s to import (sklearn ~1.5 s), which the CLI need not pay.
    from scipy.linalg.lapack import dtrtri

    x = _inputs(n)
    lengths, trends, noises = (np.asarray(g, dtype=float) for g in (LENGTH_SCALES, TREND_RATIOS, NOISE_RATIOS))
    rbf = np.exp(-0.5 * (x - x.T)[None] ** 2 / lengths[:, None, None] ** 2)  # (L, n, n)
    linear = SIGMA_0**2 + x @ x.T
    # Every (length, trend, noise) shape at once, broadcast to (L, T, N, n, n).
    shapes = (
        rbf[:, None, None]
        + trends[None, :, None, None, None] * linear
        + noises[None, None, :, None, None] * np.eye(n)
    ).reshape(-1, n, n)
    factors = np.linalg.cholesky(shapes)
    inverse = np.stack([_lapack(dtrtri(factor, lower=1), "trtri") for factor in factors])
    log_det = 2.0 * np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)
    inverse.flags.writeable = log_det.flags.writeable = False
    return inverse, log_det


_GRID = [(a, b, c) for a in LENGTH_SCALES for b in TREND_RATIOS for c in NOISE_RATIOS]  # the order of the shapes


def _max_likelihood(y: np.ndarray) -> Hyper:
    """The hyper-parameters of highest marginal likelihood on the grid, for y at x = `_inputs(len(y))`.

    Why a grid and not sklearn's L-BFGS: each of its likelihood evaluations
    costs ~1 ms of kernel bookkeeping and a fit needs 15-25 of them, so a
    fitted VWAP cost 20-40 ms here. With the kernel written as
    amplitude * (shape), the best amplitude is closed-form
    (y' S^-1 y / n = |L^-1 y|^2 / n), leaving 27 shapes whose factors do not
    depend on y (`_grid_factors`). The grid is fixed, so the choice is deterministic.
    """
    n = len(y)
    inverse, log_det = _grid_factors(n)
    whitened = inverse @ y  # (shapes, n): L^-1 y for every shape
    amplitude = np.maximum(np.einsum("ij,ij->i", whitened, whitened) / n, 1e-12)
    # Log marginal likelihood with the amplitude profiled out (constants dropped).
    score = -0.5 * (n * np.log(amplitude) + log_det)
    best = int(np.argmax(score))
    return Hyper(float(amplitude[best]), *_GRID[best])


@dataclass(frozen=True)
class _Design:
    """The y-independent kernel pieces of one fit, as sklearn's kernels compute them. Read-only."""

    rbf: np.ndarray  # RBF(x, x)
    linear: np.ndarray  # DotProduct(x, x)
    cross_rbf: np.ndarray  # RBF(ahead, x)
    cross_linear: np.ndarray  # DotProduct(ahead, x)
    prior_linear: np.ndarray  # DotProduct.diag(ahead); RBF.diag is 1


@lru_cache(maxsize=160)  # (window length, length scale, horizons): 51 x 3 in practice, ~6 MB
def _design(n: int, length_scale: float, horizons: tuple[int, ...]) -> _Design:
    x = _inputs(n)
    ahead = np.asarray(horizons, dtype=float)[:, None] / WINDOW
    scaled, scaled_ahead = x / length_scale, ahead / length_scale
    pieces = (
        np.exp(-0.5 * (scaled - scaled.T) ** 2),
        x @ x.T + SIGMA_0**2,
        np.exp(-0.5 * (scaled_ahead - scaled.T) ** 2),
        ahead @ x.T + SIGMA_0**2,
        np.einsum("ij,ij->i", ahead, ahead) + SIGMA_0**2,
    )
    for piece in pieces:
        piece.flags.writeable = False
    return _Design(*pieces)


def _kernel(rbf: np.ndarray, linear: np.ndarray, h: Hyper) -> np.ndarray:
    """amplitude * RBF + amplitude * trend * DotProduct: sklearn's operations in sklearn's order."""
    return h.amplitude * rbf + (h.amplitude * h.trend) * linear


ALPHA = 1e-10  # GaussianProcessRegressor's default jitter on the training diagonal


@dataclass(frozen=True)
class Targets:
    """y standardised as sklearn's normalize_y does: standard = (y - mean) / scale."""

    standard: np.ndarray
    mean: float
    scale: float

    @classmethod
    def of(cls, y: np.ndarray) -> Targets:
        # np.mean and np.std's own steps (sum / n; sqrt(sum of squared deviations / n)): the same
        # doubles, without their ~20 us of Python-level dispatch.
        mean = y.sum() / len(y)
        deviation = y - mean
        spread = np.sqrt((deviation * deviation).sum() / len(y))
        scale = spread if spread != 0.0 else 1.0  # sklearn's _handle_zeros_in_scale
        return cls(deviation / scale, mean, scale)


def _lapack(result: tuple[np.ndarray, int], routine: str) -> np.ndarray:
    if result[1] != 0:  # LAPACK reports failure in `info`, not by raising
        raise np.linalg.LinAlgError(f"{routine} failed (info {result[1]}): the projection kernel is not positive definite")
    return result[0]


def posterior(targets: Targets, horizons: tuple[int, ...], h: Hyper) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and sd `horizons` candles ahead of a GP with the kernel of `h`, fitted to y at
    x = `_inputs(len(y))` (ahead: x = horizon / WINDOW).

    The numbers of sklearn's GaussianProcessRegressor(kernel, alpha=ALPHA, normalize_y=True,
    optimizer=None).fit(x, y).predict(ahead, return_std=True) (tested against it) by the same
    LAPACK routines, without its validation and kernel-object bookkeeping: those cost ~100x the
    arithmetic on 60 points.
    """
    from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs

    n = len(targets.standard)
    design = _design(n, h.length_scale, tuple(horizons))
    train = _kernel(design.rbf, design.linear, h)
    diagonal = train.reshape(-1)[:: n + 1]  # a view
    diagonal += h.amplitude * h.noise  # the White term, then the jitter: sklearn adds them in this order
    diagonal += ALPHA
    factor = _lapack(dpotrf(train, lower=1, clean=1), "potrf")
    weights = _lapack(dpotrs(factor, targets.standard, lower=1), "potrs")
    cross = _kernel(design.cross_rbf, design.cross_linear, h)
    mean = targets.scale * (cross @ weights) + targets.mean
    v = _lapack(dtrtrs(factor, cross.T, lower=1), "trtrs")
    prior = h.amplitude + (h.amplitude * h.trend) * design.prior_linear
    variance = (prior + h.amplitude * h.noise) - np.einsum("ij,ji->i", v.T, v)
    variance[variance < 0] = 0.0  # round-off on a near-certain point, clipped as sklearn does
    return mean, np.sqrt(variance * targets.scale**2)


@cache
def _blas() -> ThreadpoolController:
    # Built once (~5 ms); a limit through it then costs ~25 us. It only sees the BLAS libraries
    # loaded before it: scipy's LAPACK (its own OpenBLAS, not numpy's) must be loaded first, or its
    # threads stay unlimited and a 0.1 ms fit takes 7 ms.
    import scipy.linalg.lapack  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_single_threaded = 0  # depth of open `one_blas_thread` blocks


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread while it lasts (process-wide): on 60x60 systems OpenBLAS's thread hand-off
    costs more than it saves. Re-entrant at no cost, so several projections pay the ~25 us limit
    once. Not to be held across an await: other coroutines would run limited too.
    """
    global _single_threaded
    if _single_threaded:
        yield
        return
    with _blas().limit(limits=1, user_api="blas"):
        _single_threaded += 1
        try:
            yield
        finally:
            _single_threaded -= 1


@dataclass(frozen=True)
class Projection:
    points: list[VwapProjection]
    kernel: str  # the fitted kernel as sklearn writes it (`Hyper.describe`), or why there is no fit


def project_vwap(vwap: np.ndarray, horizons: tuple[int, ...] = HORIZONS, window: int = WINDOW) -> Projection:
    """Gaussian-process forecast of the VWAP `horizons` candles past its last value.

    Fitted to the newest `window` defined values (x = candle offset from the
    last one / WINDOW, y = value / last value, standardised as sklearn's
    normalize_y does) with the kernel of `Hyper`, its hyper-parameters by
    maximum marginal likelihood (`_max_likelihood`), by `posterior`. The band
    is mean +/- 1.96 sigma of the predictive distribution (noise included).
    """
    defined = vwap[~np.isnan(vwap)][-window:]
    if len(defined) < MIN_POINTS:
        return Projection([], f"no fit: {len(defined)} VWAP values, need {MIN_POINTS}")
    last = float(defined[-1])
    targets = Targets.of(defined / last)
    with one_blas_thread():
        hyper = _max_likelihood(targets.standard)
        mean, std = posterior(targets, horizons, hyper)
    # Whole arrays, then Python floats: the same operations per element as scalar arithmetic.
    bands = zip(horizons, (mean * last).tolist(), ((mean - Z95 * std) * last).tolist(), ((mean + Z95 * std) * last).tolist(), strict=True)
    points = [VwapProjection(candles_ahead=int(k), mean=m, lower=lo, upper=hi) for k, m, lo, hi in bands]
    return Projection(points, hyper.describe())
