"""Projections of a symbol's anchored VWAPs: each VWAP's newest values, fitted together (`tools.avwap_fit`).

`prepare_projections` is the part each VWAP takes alone (its window of defined values), so a caller
can do it as its VWAPs come, a timeframe at a time; `finish_projections` fits all of them in one batch
under one BLAS thread, and turns the posteriors into bands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from pydantic import TypeAdapter

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

from state.analysis import VwapProjection
from tools.avwap_fit import HORIZONS, MIN_POINTS, WINDOW, Z95, _best_of, _grid_squares_each, _posteriors, _targets


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
    """A VWAP's newest defined values (`prepare_projections`), fitted in `finish_projections`' batch."""

    values: np.ndarray


def prepare_projections(vwaps: Sequence[np.ndarray], window: int = WINDOW) -> list[Prepared]:
    """The step of `project_vwaps` that each VWAP takes alone, so that a caller can do it as its VWAPs
    come (a timeframe at a time) and `finish_projections` all of them in one batch."""
    return [Prepared(vwap[~np.isnan(vwap)][-window:]) for vwap in vwaps]


def finish_projections(prepared: Sequence[Prepared], horizons: tuple[int, ...] = HORIZONS) -> list[Projection]:
    """The projections of `prepare_projections`' VWAPs (of one call or several), in order."""
    fitted = [each.values for each in prepared if len(each.values) >= MIN_POINTS]
    projections = iter(_project(fitted, horizons) if fitted else [])
    return [
        next(projections) if len(each.values) >= MIN_POINTS else Projection([], f"no fit: {len(each.values)} VWAP values, need {MIN_POINTS}")
        for each in prepared
    ]


def _project(defined: list[np.ndarray], horizons: tuple[int, ...]) -> list[Projection]:
    """The projections of VWAPs' newest values that have a fit (at least MIN_POINTS values each)."""
    with one_blas_thread():
        targets = _targets(defined)
        hypers = _best_of(_grid_squares_each([fit.standard for fit in targets]), [len(values) for values in defined])
        mean, std = _posteriors(targets, horizons, hypers)
    last = np.array([values[-1] for values in defined])[:, None]
    # Whole arrays, then Python floats: the same operations per element as scalar arithmetic.
    bands = ((mean * last).ravel().tolist(), ((mean - Z95 * std) * last).ravel().tolist(), ((mean + Z95 * std) * last).ravel().tolist())
    ahead = [int(k) for k in horizons]
    rows = zip(ahead * len(defined), *bands, strict=True)
    # Every VWAP's band per horizon in one validation: the points VwapProjection(**point) builds one by one.
    points = _POINTS.validate_python([{"candles_ahead": k, "mean": m, "lower": lo, "upper": hi} for k, m, lo, hi in rows])
    return [Projection(points[i * len(ahead) : (i + 1) * len(ahead)], hyper.describe()) for i, hyper in enumerate(hypers)]


_POINTS = TypeAdapter(list[VwapProjection])
