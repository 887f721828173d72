"""The Gaussian-process projection of anchored VWAPs (`tools.avwap`), a timeframe's VWAPs at once.

Each VWAP keeps its own calls for the steps on its n values (standardising, the products with
the grid's factors, its LAPACK factor and solves), exactly as a fit of it alone makes them; the
steps after those run on arrays of one row per VWAP (27 grid scores, 4 horizons) whatever their
lengths, one numpy call for all. Every number is a lone fit's (batched BLAS products would sum in
another order), while most of the numpy call overhead, which on 60 points costs more than the
arithmetic, is paid once per timeframe instead of once per VWAP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

from state.analysis import VwapProjection

WINDOW = 60  # newest VWAP values the projection is fitted to
MIN_POINTS = 10  # fewer VWAP values than this: no projection, rather than a fit to noise
HORIZONS = (1, 3, 6, 12)  # candles ahead
Z95 = 1.959964  # two-sided 95 % of a normal distribution

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
    per n and each fit is left with one batched product (`_max_likelihoods`).
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
    """The hyper-parameters of highest marginal likelihood on the grid, for y at x = `_inputs(len(y))`."""
    return _max_likelihoods([y])[0]


def _max_likelihoods(ys: Sequence[np.ndarray]) -> list[Hyper]:
    """`_max_likelihood` of each y (of any lengths).

    Why a grid and not sklearn's L-BFGS: each of its likelihood evaluations
    costs ~1 ms of kernel bookkeeping and a fit needs 15-25 of them, so a
    fitted VWAP cost 20-40 ms here. With the kernel written as
    amplitude * (shape), the best amplitude is closed-form
    (y' S^-1 y / n = |L^-1 y|^2 / n), leaving 27 shapes whose factors do not
    depend on y (`_grid_factors`). The grid is fixed, so the choice is deterministic.
    """
    return _best_of([_grid_squares(y) for y in ys], [len(y) for y in ys])


def _grid_squares(y: np.ndarray) -> np.ndarray:
    """|L^-1 y|^2 for every grid shape: a fit's own share of `_max_likelihoods`, done as it does it."""
    whitened = _grid_factors(len(y))[0] @ y  # (shapes, n): L^-1 y for every shape
    return np.einsum("ij,ij->i", whitened, whitened)


def _best_of(grid_squares: Sequence[np.ndarray], lengths: Sequence[int]) -> list[Hyper]:
    """The rest of `_max_likelihoods`, for fits of `lengths` values with those `_grid_squares`: one row each."""
    squares = np.array(grid_squares).reshape(len(lengths), len(_GRID))
    log_det = np.array([_grid_factors(n)[1] for n in lengths]).reshape(len(lengths), len(_GRID))
    n = np.array(lengths)[:, None]
    amplitude = np.maximum(squares / n, 1e-12)
    # Log marginal likelihood with the amplitude profiled out (constants dropped).
    score = -0.5 * (n * np.log(amplitude) + log_det)
    best = score.argmax(axis=1)
    chosen = amplitude[np.arange(len(best)), best]
    return [Hyper(a, *_GRID[b]) for a, b in zip(chosen.tolist(), best.tolist(), strict=True)]


@dataclass(frozen=True)
class _Design:
    """The y-independent kernel pieces of one fit, as sklearn's kernels compute them. Read-only.

    RBF(x, x) over RBF(ahead, x) in one array, DotProduct likewise: one kernel formation gives a fit
    its training and cross kernels (the first n rows and the rest), each element as formed alone.
    """

    rbf_rows: np.ndarray  # RBF(x, x) then RBF(ahead, x): (n + horizons, n)
    linear_rows: np.ndarray  # DotProduct(x, x) then DotProduct(ahead, x)


@lru_cache(maxsize=160)  # (window length, length scale, horizons): 51 x 3 in practice, ~6 MB
def _design(n: int, length_scale: float, horizons: tuple[int, ...]) -> _Design:
    x = _inputs(n)
    ahead = np.asarray(horizons, dtype=float)[:, None] / WINDOW
    scaled, scaled_ahead = x / length_scale, ahead / length_scale
    rbf = (np.exp(-0.5 * (scaled - scaled.T) ** 2), np.exp(-0.5 * (scaled_ahead - scaled.T) ** 2))
    linear = (x @ x.T + SIGMA_0**2, ahead @ x.T + SIGMA_0**2)
    pieces = (np.concatenate(rbf), np.concatenate(linear))
    for piece in pieces:
        piece.flags.writeable = False
    return _Design(*pieces)


@lru_cache(maxsize=8)
def _prior_linear(horizons: tuple[int, ...]) -> np.ndarray:
    """DotProduct.diag(ahead) (RBF.diag is 1), the same for every fit. Read-only."""
    ahead = np.asarray(horizons, dtype=float)[:, None] / WINDOW
    prior = np.einsum("ij,ij->i", ahead, ahead) + SIGMA_0**2
    prior.flags.writeable = False
    return prior


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
        # np.mean and np.std's own steps (sum / n; sqrt(sum of squared deviations / n)), the scalar
        # ones on Python floats: the same doubles, without numpy's per-call dispatch.
        mean = float(y.sum()) / len(y)
        deviation = y - mean
        spread = math.sqrt(float((deviation * deviation).sum()) / len(y))
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
    mean, std = _posteriors([targets], horizons, [h])
    return mean[0], std[0]


def _posteriors(
    targets: Sequence[Targets], horizons: tuple[int, ...], hypers: Sequence[Hyper]
) -> tuple[np.ndarray, np.ndarray]:
    """`posterior` of each fit (of any lengths), as (fits, horizons) arrays of predictive means and sds.

    Each fit's solves are its own (`_solve`); the rest runs on (fits, horizons) arrays, each
    element taking the operations a lone fit applies to its numbers, in the same order.
    """
    horizons = tuple(horizons)
    crossed, explained = np.empty((len(hypers), len(horizons))), np.empty((len(hypers), len(horizons)))
    for i, (fit, h) in enumerate(zip(targets, hypers, strict=True)):
        crossed[i], explained[i] = _solve(fit.standard, h, horizons)
    amplitude = np.array([h.amplitude for h in hypers])[:, None]
    trend = np.array([h.amplitude * h.trend for h in hypers])[:, None]  # the kernel's weights, as `_kernel` forms them
    noise = np.array([h.amplitude * h.noise for h in hypers])[:, None]
    scale = np.array([fit.scale for fit in targets])[:, None]
    mean = scale * crossed + np.array([fit.mean for fit in targets])[:, None]
    variance = (amplitude + trend * _prior_linear(horizons) + noise) - explained
    variance[variance < 0] = 0.0  # round-off on a near-certain point, clipped as sklearn does
    return mean, np.sqrt(variance * scale**2)


def _solve(y: np.ndarray, h: Hyper, horizons: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A fit's part of `posterior` that depends on its length: K*' K^-1 y and the diagonal of K*' K^-1 K*."""
    from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs

    n = len(y)
    design = _design(n, h.length_scale, horizons)
    kernel = _kernel(design.rbf_rows, design.linear_rows, h)
    train, cross = kernel[:n], kernel[n:]  # K(x, x) and K(ahead, x): C-contiguous views, as if formed apart
    diagonal = train.reshape(-1)[:: n + 1]  # a view
    diagonal += h.amplitude * h.noise  # the White term, then the jitter: sklearn adds them in this order
    diagonal += ALPHA
    factor = _lapack(dpotrf(train, lower=1, clean=1), "potrf")
    weights = _lapack(dpotrs(factor, y, lower=1), "potrs")
    v = _lapack(dtrtrs(factor, cross.T, lower=1), "trtrs")
    return cross @ weights, np.einsum("ij,ji->i", v.T, v)


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
    maximum marginal likelihood (`_max_likelihoods`), by `posterior`. The band
    is mean +/- 1.96 sigma of the predictive distribution (noise included).
    """
    return project_vwaps([vwap], horizons, window)[0]


def project_vwaps(vwaps: Sequence[np.ndarray], horizons: tuple[int, ...] = HORIZONS, window: int = WINDOW) -> list[Projection]:
    """`project_vwap` of each VWAP, in order, fitted together (see the module's docstring)."""
    return finish_projections(prepare_projections(vwaps, window), horizons)


@dataclass(frozen=True)
class Prepared:
    """A VWAP's own share of its projection (`prepare_projections`): its newest defined values and, if
    there are enough of them to fit, their targets and grid squares. What is left is done in a batch."""

    values: np.ndarray
    targets: Targets | None
    grid_squares: np.ndarray | None


def prepare_projections(vwaps: Sequence[np.ndarray], window: int = WINDOW) -> list[Prepared]:
    """The steps of `project_vwaps` that each VWAP takes alone, so that a caller can do them as its
    VWAPs come (a timeframe at a time) and `finish_projections` all of them in one batch."""
    prepared = []
    with one_blas_thread():
        for vwap in vwaps:
            values = vwap[~np.isnan(vwap)][-window:]
            if len(values) < MIN_POINTS:
                prepared.append(Prepared(values, None, None))
                continue
            targets = Targets.of(values / float(values[-1]))
            prepared.append(Prepared(values, targets, _grid_squares(targets.standard)))
    return prepared


def finish_projections(prepared: Sequence[Prepared], horizons: tuple[int, ...] = HORIZONS) -> list[Projection]:
    """The projections of `prepare_projections`' VWAPs (of one call or several), in order."""
    fitted = [each for each in prepared if each.targets is not None]
    projections = iter(_project(fitted, horizons) if fitted else [])
    return [next(projections) if each.targets is not None else _no_fit(len(each.values)) for each in prepared]


def _no_fit(count: int) -> Projection:
    return Projection([], f"no fit: {count} VWAP values, need {MIN_POINTS}")


def _project(fitted: list[Prepared], horizons: tuple[int, ...]) -> list[Projection]:
    """The projections of prepared VWAPs that have a fit (at least MIN_POINTS values each)."""
    defined = [each.values for each in fitted]
    targets: list[Targets] = [each.targets for each in fitted]  # type: ignore[misc]  # not None: fitted
    with one_blas_thread():
        hypers = _best_of([each.grid_squares for each in fitted], [len(values) for values in defined])  # type: ignore[misc]
        mean, std = _posteriors(targets, horizons, hypers)
    last = np.array([values[-1] for values in defined])[:, None]
    # Whole arrays, then Python floats: the same operations per element as scalar arithmetic.
    bands = ((mean * last).tolist(), ((mean - Z95 * std) * last).tolist(), ((mean + Z95 * std) * last).tolist())
    return [_projection(horizons, *row, hyper.describe()) for hyper, *row in zip(hypers, *bands, strict=True)]


def _projection(horizons: tuple[int, ...], mean: list[float], lower: list[float], upper: list[float], kernel: str) -> Projection:
    """One VWAP's band per horizon."""
    points = zip(horizons, mean, lower, upper, strict=True)
    return Projection([VwapProjection(candles_ahead=int(k), mean=m, lower=lo, upper=hi) for k, m, lo, hi in points], kernel)
