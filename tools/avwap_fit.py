"""The Gaussian-process projection of anchored VWAPs (`tools.avwap`), a symbol's VWAPs at once.

Every number is a lone fit's: each VWAP keeps its own BLAS/LAPACK calls (batched products would
sum in another order); what is elementwise, or a sum along one row, runs on the stacked rows of the
VWAPs of one length (BATCH or more) or on one row per VWAP (27 grid scores, 4 horizons), so most
of the numpy call overhead, which on 60 points costs more than the arithmetic, is paid once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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
    return _best_of(_grid_squares_each(ys), [len(y) for y in ys])


def _grid_squares(y: np.ndarray) -> np.ndarray:
    """|L^-1 y|^2 for every grid shape: a fit's own share of `_max_likelihoods`, done as it does it."""
    whitened = _grid_factors(len(y))[0] @ y  # (shapes, n): L^-1 y for every shape
    return np.einsum("ij,ij->i", whitened, whitened)


BATCH = 3  # fits of one length from which on their sums share numpy calls: below it the stacking costs more


def _by_length(lengths: Sequence[int]) -> tuple[dict[int, list[int]], list[int]]:
    """The indices of the lengths shared by BATCH or more fits, by length; and the rest's, in order."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    alone = [i for i, n in enumerate(lengths) if len(groups[n]) < BATCH]
    return {n: members for n, members in groups.items() if len(members) >= BATCH}, alone


def _grid_squares_each(ys: Sequence[np.ndarray]) -> np.ndarray:
    """`_grid_squares` of each y, a row each. Each (shape, y) product is still one gemv, as in a lone y's
    stacked product: for ys of one length one broadcast matmul makes those calls shape by shape (each
    factor read once for all the ys), and one einsum sums each row as a lone y's einsum does."""
    squares = np.empty((len(ys), len(_GRID)))
    groups, alone = _by_length([len(y) for y in ys])
    for i in alone:
        squares[i] = _grid_squares(ys[i])
    for n, members in groups.items():
        column = np.array([ys[i] for i in members], dtype=float)[None, :, :, None]  # (1, ys, n, 1)
        whitened = (_grid_factors(n)[0][:, None] @ column).reshape(-1, n)  # (shapes * ys, n)
        squares[members] = np.einsum("ij,ij->i", whitened, whitened).reshape(len(_GRID), len(members)).T
    return squares


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
    """The y-independent kernel pieces of one fit, as sklearn's kernels compute them. Read-only. RBF(x, x)
    over RBF(ahead, x) in one array, DotProduct likewise: one kernel formation gives a fit its training
    and cross kernels (the first n rows and the rest), each element as formed alone."""

    rbf_rows: np.ndarray  # RBF(x, x) then RBF(ahead, x): (n + horizons, n)
    linear_rows: np.ndarray  # DotProduct(x, x) then DotProduct(ahead, x)
    symmetric: bool  # RBF(x, x) and DotProduct(x, x) equal their transposes bit for bit (see `_solve`)


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
    symmetric = all(np.array_equal(piece[:n], piece[:n].T) for piece in pieces)
    return _Design(*pieces, symmetric)


@lru_cache(maxsize=8)
def _prior_linear(horizons: tuple[int, ...]) -> np.ndarray:
    """DotProduct.diag(ahead) (RBF.diag is 1), the same for every fit. Read-only."""
    ahead = np.asarray(horizons, dtype=float)[:, None] / WINDOW
    prior = np.einsum("ij,ij->i", ahead, ahead) + SIGMA_0**2
    prior.flags.writeable = False
    return prior


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


def _targets(defined: Sequence[np.ndarray]) -> list[Targets]:
    """`Targets.of(values / values[-1])` of each VWAP's values, float64 ones of a shared length at once: each
    step is elementwise (`of`'s Python-float steps are the same IEEE operations) or a row's sum, which
    numpy takes on a row of a C-contiguous array as on the row alone (the same pairwise loop)."""
    targets: list[Targets] = [None] * len(defined)  # type: ignore[list-item]  # every one is set below
    groups, alone = _by_length([len(values) for values in defined])
    for n, members in list(groups.items()):
        if any(defined[i].dtype != np.float64 for i in members):  # numpy's promotions of other dtypes: alone
            alone += groups.pop(n)
    for i in alone:
        targets[i] = Targets.of(defined[i] / float(defined[i][-1]))
    for n, members in groups.items():
        values = np.array([defined[i] for i in members])
        y = values / values[:, -1:]
        mean = y.sum(axis=1) / n
        deviation = y - mean[:, None]
        spread = np.sqrt((deviation * deviation).sum(axis=1) / n)
        scale = np.where(spread != 0.0, spread, 1.0)
        standard = deviation / scale[:, None]
        for row, (i, m, sd) in enumerate(zip(members, mean.tolist(), scale.tolist(), strict=True)):
            targets[i] = Targets(standard[row], m, sd)
    return targets


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

    Each fit's solves are its own (`_solve`), in order; the diagonals of K*' K^-1 K* of fits of one length
    are one einsum (as in `_grid_squares_each`); the rest runs on (fits, horizons) arrays, each element
    taking the operations a lone fit applies to its numbers, in the same order.
    """
    horizons = tuple(horizons)
    count, ahead = len(hypers), len(horizons)
    crossed, explained = np.empty((count, ahead)), np.empty((count, ahead))
    solved = [_solve(fit.standard, h, horizons) for fit, h in zip(targets, hypers, strict=True)]
    groups, alone = _by_length([len(fit.standard) for fit in targets])
    for i in alone:
        crossed[i], v = solved[i]
        explained[i] = np.einsum("ij,ij->i", v, v)
    for members in groups.values():
        crossed[members] = [solved[i][0] for i in members]
        v = np.concatenate([solved[i][1] for i in members])
        explained[members] = np.einsum("ij,ij->i", v, v).reshape(len(members), ahead)
    amplitude = np.array([h.amplitude for h in hypers])[:, None]
    trend = np.array([h.amplitude * h.trend for h in hypers])[:, None]  # the kernel's weights, as `_solve` forms them
    noise = np.array([h.amplitude * h.noise for h in hypers])[:, None]
    scale = np.array([fit.scale for fit in targets])[:, None]
    mean = scale * crossed + np.array([fit.mean for fit in targets])[:, None]
    variance = (amplitude + trend * _prior_linear(horizons) + noise) - explained
    variance[variance < 0] = 0.0  # round-off on a near-certain point, clipped as sklearn does
    return mean, np.sqrt(variance * scale**2)


def _solve(y: np.ndarray, h: Hyper, horizons: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A fit's part of `posterior` that depends on its length: K*' K^-1 y and V' (V = L^-1 K*, C-contiguous),
    whose rows' sums of squares are the diagonal of K*' K^-1 K*."""
    from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs

    n = len(y)
    design = _design(n, h.length_scale, horizons)
    # amplitude * RBF + amplitude * trend * DotProduct: sklearn's operations in sklearn's order.
    kernel = h.amplitude * design.rbf_rows + (h.amplitude * h.trend) * design.linear_rows
    train, cross = kernel[:n], kernel[n:]  # K(x, x) and K(ahead, x): C-contiguous views, as if formed apart
    diagonal = train.reshape(-1)[:: n + 1]  # a view
    diagonal += h.amplitude * h.noise  # the White term, then the jitter: sklearn adds them in this order
    diagonal += ALPHA
    if design.symmetric:  # then so is K(x, x): its transpose is it in Fortran order, factored in place, not copied
        factor = _lapack(dpotrf(train.T, lower=1, clean=1, overwrite_a=1), "potrf")
    else:
        factor = _lapack(dpotrf(train, lower=1, clean=1), "potrf")
    weights = _lapack(dpotrs(factor, y, lower=1), "potrs")
    v = _lapack(dtrtrs(factor, cross.T, lower=1), "trtrs")
    return cross @ weights, v.T
