"""The `aitrader` command as a user runs it: separate processes, the real database files and server.

Each command is its own process, so `approve` after `run` proves a paused run
survives a process restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AITRADER = [sys.executable, "-m", "api.cli"]
ROOT = Path(__file__).resolve().parents[1]


def aitrader(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AITRADER, *args], env=env, cwd=tmp_cwd(env), capture_output=True, text=True, timeout=120)


def tmp_cwd(env: dict[str, str]) -> str:
    # Not the repository root: a developer's .env there must not leak into the test.
    path = Path(env["AITRADER_HOME"]).parent
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def test_run_prints_every_stage_and_json_has_every_section(cli_env: dict[str, str]) -> None:
    text = aitrader(cli_env, "run", "BTC/USDT", "--scenario", "uptrend", "--as-of", "2026-11-20T13:37:00+00:00")
    assert text.returncode == 0, text.stderr
    for stage in ("sanity", "market data", "data quality", "regime", "signal", "consensus", "verification", "risk", "order", "DECISION"):
        assert stage in text.stdout
    assert "thread" in text.stdout
    # Another symbol: BTC/USDT is now held, and a second long would breach the per-symbol exposure limit.
    document = aitrader(cli_env, "run", "ETH/USDT", "--scenario", "uptrend", "--as-of", "2026-11-20T13:37:00+00:00", "--json")
    assert document.returncode == 0, document.stderr
    parsed = json.loads(document.stdout)
    assert parsed["decision"]["action"] == "BUY" and parsed["pending_interrupt"] is None
    assert {"request", "sanity", "market", "quality", "features", "levels", "signals", "consensus", "verification", "risk", "approval", "orders", "audit"} <= set(parsed["state"])
    assert parsed["thread_id"]


def test_approval_across_processes_then_history_and_replay(cli_env: dict[str, str]) -> None:
    paused = aitrader(cli_env, "run", "ETH/USDT", "--scenario", "uptrend", "--approval", "always", "--as-of", "2026-11-20T13:37:00+00:00", "--json")
    assert paused.returncode == 0, paused.stderr
    document = json.loads(paused.stdout)
    thread = document["thread_id"]
    assert document["decision"] is None and document["pending_interrupt"]["proposal"]["side"] == "buy"
    human = aitrader(cli_env, "run", "ETH/USDT", "--scenario", "uptrend", "--approval", "always", "--as-of", "2026-11-20T13:37:00+00:00")
    assert "WAITING FOR APPROVAL" in human.stdout and "aitrader approve" in human.stdout

    approved = aitrader(cli_env, "approve", thread, "--by", "carol", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["decision"]["action"] == "BUY"
    again = aitrader(cli_env, "approve", thread)
    assert again.returncode == 4 and "not waiting for approval" in again.stderr

    history = aitrader(cli_env, "history", thread, "--json")
    checkpoints = json.loads(history.stdout)
    assert any("approval" in c["nodes"] for c in checkpoints)
    risk_checkpoint = next(c for c in checkpoints if c["next"] == ["approval"])
    replay = aitrader(cli_env, "replay", thread, "--checkpoint", risk_checkpoint["checkpoint_id"], "--json")
    assert replay.returncode == 0, replay.stderr
    # Replaying from before the approval brings the interrupt back: a human must decide again.
    assert json.loads(replay.stdout)["pending_interrupt"] is not None


def test_reject_needs_a_reason_and_records_it(cli_env: dict[str, str]) -> None:
    paused = json.loads(aitrader(cli_env, "run", "SOL/USDT", "--scenario", "uptrend", "--approval", "always", "--as-of", "2026-11-20T13:37:00+00:00", "--json").stdout)
    missing = aitrader(cli_env, "reject", paused["thread_id"])
    assert missing.returncode == 2 and "--reason" in missing.stderr
    rejected = aitrader(cli_env, "reject", paused["thread_id"], "--reason", "too late in the day", "--json")
    decision = json.loads(rejected.stdout)["decision"]
    assert decision["action"] == "REJECT" and "too late in the day" in decision["reason"]


@pytest.mark.parametrize("args,message", [(["run", "BTC-USDT!"], "malformed symbol"), (["run", "BTC/USDT", "--timeframes", "5m,7m"], "unknown timeframe"), (["approve", "no-such-thread"], "no run with thread id")])
def test_bad_input_gets_a_clear_error_and_non_zero_exit(cli_env: dict[str, str], args: list[str], message: str) -> None:
    result = aitrader(cli_env, *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_an_infrastructure_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env.update(AITRADER_HOME=str(tmp_path / "home"), AITRADER_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    result = aitrader(env, "run", "BTC/USDT")
    assert result.returncode == 3 and "cannot reach PostgreSQL" in result.stderr
