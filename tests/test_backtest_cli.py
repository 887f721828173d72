"""`aitrader backtest` as a separate process, on freqtrade files written by the test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.backtest_cli import ENSEMBLE, ensemble_signals, select_strategies
from nodes.aggregate import TRACK_RECORD_NAMESPACE
from state import Settings
from state.sections import StrategyTrackRecord
from tests.test_cli_data import aitrader
from tests.test_ingestion import market_files
from tools.storage import open_storage


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    variables["AITRADER_HOME"] = str(tmp_path / "home")
    variables["AITRADER_LLM_ENABLED"] = "false"
    market_files(tmp_path / "data")
    return variables


def backtest_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["backtest", "--symbols", "BTC/USDT", "--timeframe", "15m", "--data-dir", str(tmp_path / "data"), *extra]


async def test_json_report_with_walk_forward_monte_carlo_and_stored_records(env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = await aitrader(env, *backtest_args(tmp_path, "--walk-forward", "3", "--monte-carlo", "50", "--json"))
    assert code == 0, err
    assert "job" in err  # the progress bar, on stderr only
    document = json.loads(out)
    names = [s.name for s in select_strategies(None)]
    assert [d["strategy"] for d in document["strategies"]] == [*names, ENSEMBLE]
    assert document["symbols"]["BTC/USDT"]["source"].startswith("files:")
    assert document["symbols"]["BTC/USDT"]["candles"] == 1200
    for entry in document["strategies"]:
        overall = entry["overall"]
        assert overall["trades"] >= 0
        assert overall["win_rate"] is None or 0 <= overall["win_rate"] <= 1
        assert 0 <= overall["max_drawdown_pct"] <= 100
        assert sum(m["trades"] for m in entry["by_regime"].values()) == overall["trades"]
        assert set(entry["by_regime"]) <= {"TRENDING_UP", "TRENDING_DOWN", "RANGING"}
        assert len(entry["walk_forward"]["folds"]) == 3
        assert entry["walk_forward"]["out_of_sample"]["trades"] <= overall["trades"]
        mc = entry["monte_carlo"]
        assert mc["runs"] == 50 and mc["trades"] == overall["trades"]
        assert mc["p5_pct"] <= mc["p50_pct"] <= mc["p95_pct"]

    traded = [d for d in document["strategies"] if d["strategy"] != ENSEMBLE and d["overall"]["trades"] > 0]
    assert traded, "no strategy traded on the uptrend files"
    assert set(document["persisted"]) == {f"{d['strategy']}@{d['version']}" for d in traded}
    async with open_storage(Settings(_env_file=None, home=tmp_path / "home")) as storage:
        first = traded[0]
        item = await storage.store.aget(TRACK_RECORD_NAMESPACE, f"{first['strategy']}@{first['version']}")
        assert item is not None
        record = StrategyTrackRecord.model_validate(item.value)
        assert record.trades == first["overall"]["trades"]
        assert record.win_rate == pytest.approx(first["overall"]["win_rate"])
        assert 0 < record.payoff <= 10
        assert await storage.store.aget(TRACK_RECORD_NAMESPACE, ENSEMBLE) is None


async def test_table_mode(env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = await aitrader(env, *backtest_args(tmp_path, "--strategies", "ema_trend,sfp"))
    assert code == 0, err
    assert "strategy" in out and "trades" in out and "win %" in out and "max DD %" in out and "PF" in out
    assert "per regime" in out and "ENSEMBLE" in out and "ema_trend" in out
    assert "breakout" not in out
    assert "walk-forward" not in out and "Monte Carlo" not in out  # only when asked


async def test_unknown_strategy_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = await aitrader(env, *backtest_args(tmp_path, "--strategies", "ema_trend,no_such_thing"))
    assert code == 2
    assert "unknown strategy 'no_such_thing'" in err and "ema_trend" in err
    assert out == ""


def test_ensemble_needs_two_agreeing_strategies() -> None:
    index = pd.date_range("2026-01-01", periods=4, freq="1h", tz="UTC")

    def frame(direction: list[int], confidence: list[float], stop: float) -> pd.DataFrame:
        return pd.DataFrame(
            {"direction": direction, "confidence": confidence, "stop": stop, "target": stop + 10}, index=index
        )

    combined = ensemble_signals(
        [
            frame([1, 1, 1, 0], [0.5, 0.9, 0.3, 0], stop=1.0),
            frame([1, 0, -1, 0], [0.7, 0, 0.4, 0], stop=2.0),
            frame([0, 0, -1, 1], [0, 0, 0.2, 0.8], stop=3.0),
        ]
    )
    # Candle 0: two longs agree, the more confident one (0.7) gives the stop. Candle 1: one long alone.
    # Candle 2: shorts win the score (0.6 vs 0.3) with two agreeing. Candle 3: one long alone.
    assert combined["direction"].tolist() == [1, 0, -1, 0]
    assert combined["stop"].iloc[0] == 2.0 and combined["stop"].iloc[2] == 2.0
    assert np.isnan(combined["stop"].iloc[1])
    assert combined["confidence"].iloc[0] == pytest.approx(0.6)
