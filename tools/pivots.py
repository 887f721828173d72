"""Swing pivots and level clustering: the hand-written analysis no maintained library offers.

A pivot at candle t is confirmed only `width` candles later; the newest
`width` candles of a frame can never be pivots yet, so a frame truncated at
any candle yields exactly the pivots known at that candle (no look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class Pivot:
    position: int  # row of the pivot candle
    time: pd.Timestamp
    price: float
    kind: str  # "high" or "low"


def swing_pivots(high: pd.Series, low: pd.Series, width: int = 2) -> list[Pivot]:
    """Candles whose high (low) is strictly above (below) the `width` candles on each side."""
    highs, lows = high.to_numpy(float), low.to_numpy(float)
    span = 2 * width + 1
    if len(highs) < span:
        return []
    found: list[tuple[int, int, str]] = []
    for order, (kind, values, beats) in enumerate((("high", highs, np.greater), ("low", lows, np.less))):
        windows = sliding_window_view(values, span)
        neighbours = np.delete(windows, width, axis=1)
        extreme = neighbours.max(axis=1) if kind == "high" else neighbours.min(axis=1)
        positions = np.nonzero(beats(windows[:, width], extreme))[0] + width
        found += [(int(i), order, kind) for i in positions]
    found.sort()
    prices = {"high": highs, "low": lows}
    return [Pivot(i, high.index[i], float(prices[kind][i]), kind) for i, _, kind in found]


def label_sequence(pivots: list[Pivot]) -> list[str]:
    """HH/LH/EH for each swing high against the previous one, HL/LL/EL for lows (E = equal: no direction)."""
    labels: list[str] = []
    previous: dict[str, float] = {}
    for pivot in pivots:
        before = previous.get(pivot.kind)
        if before is not None:
            side = "H" if pivot.kind == "high" else "L"
            if pivot.price == before:
                labels.append("E" + side)
            elif pivot.kind == "high":
                labels.append("HH" if pivot.price > before else "LH")
            else:
                labels.append("HL" if pivot.price > before else "LL")
        previous[pivot.kind] = pivot.price
    return labels


@dataclass(frozen=True)
class Cluster:
    price: float
    touches: int
    last_position: int


def cluster_prices(prices: list[float], positions: list[int], tolerance: float) -> list[Cluster]:
    """Greedy single-linkage clustering of nearby prices; each cluster at its mean price."""
    if not prices or tolerance <= 0:
        return []
    order = np.argsort(prices)
    clusters: list[list[int]] = [[int(order[0])]]
    for index in order[1:]:
        if prices[index] - prices[clusters[-1][-1]] <= tolerance:
            clusters[-1].append(int(index))
        else:
            clusters.append([int(index)])
    return [
        Cluster(
            price=float(np.mean([prices[i] for i in members])),
            touches=len(members),
            last_position=max(positions[i] for i in members),
        )
        for members in clusters
    ]
