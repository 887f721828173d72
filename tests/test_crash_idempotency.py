"""A process killed between placing an order and checkpointing it never trades twice after a restart.

Real PostgreSQL, real savers, real processes: the approving process is killed
with SIGKILL right after the paper broker stored the bracket (see
tests/programs/die_after_placement.py); a new process then carries the run on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from api.runs import Lifecycles
from state import Settings
from tools.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-11-20T13:37:00+00:00"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.mark.postgres
async def test_killed_after_placement_then_resumed_places_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env |= {"AITRADER_HOME": str(tmp_path / "home"), "AITRADER_DATABASE_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    paused = run(env, "-m", "api.cli", "run", "BTC/USDT", "--scenario", "uptrend", "--approval", "always", "--as-of", AS_OF, "--json")
    assert paused.returncode == 0, paused.stderr
    thread = json.loads(paused.stdout)["thread_id"]

    crashed = run(env, "tests/programs/die_after_placement.py", "approve", thread, "--by", "mallory")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    placed_id = crashed.stdout.split("placed ", 1)[1].split()[0]

    settings = Settings(_env_file=None, home=tmp_path / "home", database_url=postgres_url)
    async with open_storage(settings) as storage:
        before = await storage.ledger.positions(thread_id=thread)
        assert [p.bracket_id for p in before] == [placed_id]  # the order exists...
        interrupted = await Lifecycles(settings, storage).outcome(thread)
        assert "orders" not in interrupted.values and interrupted.decision is None  # ...the run does not know it

    # A restarted process carries the run on from its last checkpoint: `resume` if the approval was
    # checkpointed before the kill, else the approval is still pending and is answered again.
    restarted = run(env, "-m", "api.cli", "resume", thread, "--json")
    if restarted.returncode == 4 and "waiting for approval" in restarted.stderr:
        restarted = run(env, "-m", "api.cli", "approve", thread, "--by", "mallory", "--json")
    assert restarted.returncode == 0, restarted.stderr
    done = json.loads(restarted.stdout)

    async with open_storage(settings) as storage:
        after = await storage.ledger.positions(thread_id=thread)
        everything = await storage.ledger.positions()
        trail = await storage.audit.trail(thread)
    assert done["decision"]["action"] == "BUY"
    assert done["state"]["orders"]["position"]["bracket_id"] == placed_id  # adopted, not placed again
    assert len(after) == 1 and len(everything) == 1
    assert after[0].orders == before[0].orders
    assert sum(1 for row in trail if row.event == "ORDER_FILLED") == 1
