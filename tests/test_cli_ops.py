"""Operator commands as a user runs them, each its own process: governor, audit, positions, approvals, live refusal.

On the embedded SQLite file only: the same commands' logic runs against PostgreSQL in
the in-process suites (test_governor_and_approval, test_audit_table, test_monitoring),
and the CLI's PostgreSQL path in test_cli and test_crash_idempotency; each process
here costs seconds of start-up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_cli import aitrader


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env["AITRADER_HOME"] = str(tmp_path / "home")
    return env

AS_OF = "2026-11-20T13:37:00+00:00"


def test_governor_halt_holds_runs_until_resume(cli_env: dict[str, str]) -> None:
    halted = aitrader(cli_env, "governor", "halt", "--reason", "exchange incident", "--by", "ops")
    assert halted.returncode == 0, halted.stderr
    status = json.loads(aitrader(cli_env, "governor", "status", "--json").stdout)
    assert status["halted"] and status["reason"] == "exchange incident" and status["changed_by"] == "ops"
    held = json.loads(aitrader(cli_env, "run", "BTC/USDT", "--scenario", "uptrend", "--as-of", AS_OF, "--json").stdout)
    assert held["decision"]["action"] == "REJECT" and "exchange incident" in held["decision"]["reason"]
    assert aitrader(cli_env, "governor", "resume", "--by", "ops").returncode == 0
    traded = json.loads(aitrader(cli_env, "run", "BTC/USDT", "--scenario", "uptrend", "--as-of", AS_OF, "--json").stdout)
    assert traded["decision"]["action"] == "BUY"

    trail = aitrader(cli_env, "audit", "show", traded["thread_id"], "--json")
    rows = json.loads(trail.stdout)
    assert rows[0]["node"] == "sanity" and any(r["event"] == "ORDER_FILLED" for r in rows)
    verified = aitrader(cli_env, "audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout
    positions = json.loads(aitrader(cli_env, "positions", "--json").stdout)
    # Marked or closed by now (the clock has moved on since the run), but followed either way.
    assert [p["symbol"] for p in positions["open"] + positions["closed"]] == ["BTC/USDT"]
    assert aitrader(cli_env, "audit", "show", "no-such-thread").returncode == 4


def test_governor_rejects_a_halt_without_reason_and_unknown_budget(cli_env: dict[str, str]) -> None:
    assert aitrader(cli_env, "governor", "halt").returncode == 2  # argparse: --reason is required
    blank = aitrader(cli_env, "governor", "halt", "--reason", "  ")
    assert blank.returncode == 2 and "reason" in blank.stderr
    bad = aitrader(cli_env, "governor", "budget", "lots")
    assert bad.returncode == 2 and "lots" in bad.stderr


def test_approvals_lists_waiting_runs(cli_env: dict[str, str]) -> None:
    paused = json.loads(aitrader(cli_env, "run", "ETH/USDT", "--scenario", "uptrend", "--approval", "always", "--as-of", AS_OF, "--json").stdout)
    listed = json.loads(aitrader(cli_env, "approvals", "--json").stdout)
    assert [row["thread_id"] for row in listed] == [paused["thread_id"]]
    assert listed[0]["proposal"]["symbol"] == "ETH/USDT"
    assert aitrader(cli_env, "approve", paused["thread_id"], "--by", "ops").returncode == 0
    assert json.loads(aitrader(cli_env, "approvals", "--json").stdout) == []
    (row,) = json.loads(aitrader(cli_env, "runs", "--json").stdout)
    assert row["thread_id"] == paused["thread_id"] and row["status"] == "done" and row["action"] == "BUY"


def test_live_trading_is_refused_without_the_flag_and_keys(cli_env: dict[str, str]) -> None:
    refused = aitrader(cli_env, "run", "BTC/USDT", "--live", "--as-of", AS_OF)
    assert refused.returncode == 2 and "AITRADER_LIVE_TRADING" in refused.stderr
    keyless = aitrader({**cli_env, "AITRADER_LIVE_TRADING": "true"}, "run", "BTC/USDT", "--live", "--as-of", AS_OF)
    assert keyless.returncode == 2 and "AITRADER_EXCHANGE_API_KEY" in keyless.stderr
