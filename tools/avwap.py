"""Anchored VWAPs from the most significant recent swings, and a Gaussian-process projection of each.

Everything here is a pure function of a candle frame (columns high, low,
close, volume; any index). Nothing reads a candle after the one it reports
on: a VWAP is a running sum, and an anchor is a pivot that `swing_pivots`
has already confirmed, scored only from candles up to the pivot itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.gaussian_process.kernels import Kernel
    from threadpoolctl import ThreadpoolController

from state.analysis import VwapProjection
from tools.pivots import swing_pivots

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


def anchored_vwap(frame: pd.DataFrame, anchor_position: int) -> np.ndarray:
    """VWAP from the anchor candle onward, NaN before it.

    vwap[t] = sum(tp[i] * volume[i]) / sum(volume[i]) over anchor <= i <= t,
    with typical price tp = (high + low + close) / 3. While no volume has
    traded since the anchor the value is undefined and stays NaN.
    """
    n = len(frame)
    if not 0 <= anchor_position < n:
        raise ValueError(f"anchor position {anchor_position} outside a frame of {n} candles")
    high, low, close, volume = (frame[c].to_numpy(float) for c in ("high", "low", "close", "volume"))
    typical = (high + low + close) / 3.0
    out = np.full(n, np.nan)
    # Running sums: the value at t never depends on a candle after t.
    price_volume = np.cumsum(typical[anchor_position:] * volume[anchor_position:])
    cum_volume = np.cumsum(volume[anchor_position:])
    np.divide(price_volume, cum_volume, out=out[anchor_position:], where=cum_volume > 0)
    return out


def _true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    previous = np.concatenate(([np.nan], close[:-1]))
    # The first candle has no previous close: its range is high - low (fmax/fmin skip the NaN).
    return np.fmax(high, previous) - np.fmin(low, previous)


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
    high, low, close = (frame[c].to_numpy(float) for c in ("high", "low", "close"))
    true_range = _true_range(high, low, close)
    anchors: list[Anchor] = []
    for pivot in swing_pivots(frame["high"], frame["low"], width=width):
        p = pivot.position
        start = max(0, p - lookback)
        unit = float(np.mean(true_range[start : p + 1]))
        kind: AnchorKind = "swing_high" if pivot.kind == "high" else "swing_low"
        if kind == "swing_high":
            seen = np.nonzero(high[start:p] >= high[p])[0]
            first = start + int(seen[-1]) + 1 if seen.size else start
            move = high[p] - float(np.min(low[first : p + 1]))
        else:
            seen = np.nonzero(low[start:p] <= low[p])[0]
            first = start + int(seen[-1]) + 1 if seen.size else start
            move = float(np.max(high[first : p + 1])) - low[p]
        score = move / unit if unit > 0 else 0.0
        anchors.append(Anchor(p, pivot.time, pivot.price, kind, float(score)))
    return anchors


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
    return select_anchors(pivot_significance(frame, width), len(frame) - 1, recent, per_kind)


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


def projection_kernel(amplitude: float, length_scale: float, trend: float, noise: float) -> Kernel:
    """C*RBF for the VWAP's curvature + C*DotProduct for its drift + White for what neither explains.

    The RBF alone would pull any extrapolation back to the window's mean; the
    linear DotProduct term lets a drifting VWAP keep drifting, with a band that
    widens with the distance. All hyper-parameters are fixed here: they are
    chosen by `_max_likelihood`, not by sklearn's optimizer.
    """
    # Imported here: scikit-learn costs ~1.5 s to import, which every CLI command would pay.
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel

    return (
        ConstantKernel(amplitude, "fixed") * RBF(length_scale, "fixed")
        + ConstantKernel(amplitude * trend, "fixed") * DotProduct(SIGMA_0, "fixed")
        + WhiteKernel(amplitude * noise, "fixed")
    )


def _max_likelihood(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(amplitude, length scale, trend ratio, noise ratio) of highest marginal likelihood on the grid.

    Why a grid and not sklearn's L-BFGS: each of its likelihood evaluations
    costs ~1 ms of kernel bookkeeping and a fit needs 15-25 of them, so a
    fitted VWAP cost 20-40 ms here. With the kernel written as
    amplitude * (shape), the best amplitude is closed-form
    (y' shape^-1 y / n), leaving 27 shapes whose Cholesky factors are one
    batched call (~2 ms). The grid is fixed, so the choice is deterministic.
    """
    n = len(y)
    lengths, trends, noises = (np.asarray(g, dtype=float) for g in (LENGTH_SCALES, TREND_RATIOS, NOISE_RATIOS))
    rbf = np.exp(-0.5 * (x - x.T)[None] ** 2 / lengths[:, None, None] ** 2)  # (L, n, n)
    linear = SIGMA_0**2 + x @ x.T
    # Every (length, trend, noise) shape at once, broadcast to (L, T, N, n, n).
    shapes = (
        rbf[:, None, None]
        + trends[None, :, None, None, None] * linear
        + noises[None, None, :, None, None] * np.eye(n)
    ).reshape(-1, n, n)
    params = [(float(a), float(b), float(c)) for a in lengths for b in trends for c in noises]
    # Border each shape S with y: the Cholesky factor of [[S, y], [y', c]] carries L^-1 y in its
    # last row, so one batched factorisation gives both the log-determinant and y' S^-1 y.
    # c only has to exceed y' S^-1 y, which is at most y'y / (smallest noise) since S >= noise * I.
    bordered = np.empty((len(params), n + 1, n + 1))
    bordered[:, :n, :n] = shapes
    bordered[:, :n, n] = bordered[:, n, :n] = y
    bordered[:, n, n] = 2.0 * float(y @ y) / float(noises.min()) + 1.0
    factors = np.linalg.cholesky(bordered)
    whitened = factors[:, n, :n]
    amplitude = np.maximum(np.einsum("ij,ij->i", whitened, whitened) / n, 1e-12)
    log_det = 2.0 * np.log(np.diagonal(factors, axis1=1, axis2=2)[:, :n]).sum(axis=1)
    # Log marginal likelihood with the amplitude profiled out (constants dropped).
    score = -0.5 * (n * np.log(amplitude) + log_det)
    best = int(np.argmax(score))
    return (float(amplitude[best]), *params[best])


@cache
def _blas() -> ThreadpoolController:
    # Built once (~5 ms); a limit through it then costs ~25 us instead of ~5 ms.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass(frozen=True)
class Projection:
    points: list[VwapProjection]
    kernel: str  # the fitted kernel's repr, or why there is no fit


def project_vwap(vwap: np.ndarray, horizons: tuple[int, ...] = HORIZONS, window: int = WINDOW) -> Projection:
    """Gaussian-process forecast of the VWAP `horizons` candles past its last value.

    Fitted to the newest `window` defined values (x = candle offset from the
    last one / WINDOW, y = value / last value, standardised as sklearn's
    normalize_y does) with the kernel of `projection_kernel`, its
    hyper-parameters by maximum marginal likelihood (`_max_likelihood`). The
    band is mean +/- 1.96 sigma of the predictive distribution (noise included).
    """
    defined = vwap[~np.isnan(vwap)][-window:]
    if len(defined) < MIN_POINTS:
        return Projection([], f"no fit: {len(defined)} VWAP values, need {MIN_POINTS}")
    last = float(defined[-1])
    x = (np.arange(len(defined), dtype=float) - (len(defined) - 1))[:, None] / WINDOW
    y = defined / last
    spread = float(np.std(y))
    standard = (y - y.mean()) / (spread if spread > 0 else 1.0)  # what normalize_y will fit
    ahead = np.asarray(horizons, dtype=float)[:, None] / WINDOW
    # One BLAS thread: on 60x60 systems OpenBLAS's thread hand-off costs more than it saves, and
    # with the other core busy a 0.3 ms predict took 9 ms. The limit is process-wide while it lasts.
    with _blas().limit(limits=1, user_api="blas"):
        kernel = projection_kernel(*_max_likelihood(x, standard))
        from sklearn.gaussian_process import GaussianProcessRegressor

        model = GaussianProcessRegressor(kernel=kernel, alpha=1e-10, normalize_y=True, optimizer=None)
        model.fit(x, y)
        mean, std = model.predict(ahead, return_std=True)
    points = [
        VwapProjection(
            candles_ahead=int(k),
            mean=float(m * last),
            lower=float((m - Z95 * s) * last),
            upper=float((m + Z95 * s) * last),
        )
        for k, m, s in zip(horizons, mean, std, strict=True)
    ]
    return Projection(points, repr(model.kernel_))
