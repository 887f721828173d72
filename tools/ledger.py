"""Positions (one bracket each) and the governor's flags, kept in the run's database.

A position is stored as one row: the columns risk and monitoring filter on,
and the whole validated model as JSON. Inserting a bracket id that already
exists keeps the stored row and returns it, so two racing executions of the
same bracket end with one position.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from state.portfolio import GovernorState, Position, PositionStatus
from tools.database import Database, MemoryDatabase, Session

POSITIONS = "aitrader_positions"
GOVERNOR = "aitrader_governor"
RunStatus = Literal["queued", "running", "paused", "done", "failed", "skipped"]
APPROVALS = "aitrader_approvals"
RUNS = "aitrader_runs"

_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {POSITIONS} (
        bracket_id TEXT PRIMARY KEY,
        thread_id TEXT,
        symbol TEXT NOT NULL,
        broker TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        closed_at TEXT,
        document TEXT NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {POSITIONS}_status ON {POSITIONS} (status, symbol)",
    f"CREATE INDEX IF NOT EXISTS {POSITIONS}_thread ON {POSITIONS} (thread_id)",
    # One row for the whole installation: CHECK (id = 1) makes a second one impossible.
    f"""CREATE TABLE IF NOT EXISTS {GOVERNOR} (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        document TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    # Runs waiting at the approval interrupt: what `approvals` lists and the expiry sweep walks.
    f"""CREATE TABLE IF NOT EXISTS {APPROVALS} (
        thread_id TEXT PRIMARY KEY,
        interrupt_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        expires_at TEXT,
        proposal TEXT NOT NULL
    )""",
    # Every thread any surface started: what `GET /runs` lists without walking the checkpoints.
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        thread_id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        status TEXT NOT NULL,
        action TEXT,
        reason TEXT,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        parent_thread_id TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {RUNS}_started ON {RUNS} (started_at)",
]


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def setup(self) -> None:
        for statement in _SCHEMA:
            await self.db.execute(statement)

    # -- governor ---------------------------------------------------------------------------

    async def governor(self) -> GovernorState:
        rows = await self.db.fetch(f"SELECT document FROM {GOVERNOR} WHERE id = 1")
        return GovernorState.model_validate_json(rows[0]["document"]) if rows else GovernorState()

    async def save_governor(self, state: GovernorState) -> None:
        await self.db.execute(
            f"INSERT INTO {GOVERNOR} (id, document, updated_at) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            (state.model_dump_json(), _iso(datetime.now(UTC))),
        )

    # -- positions --------------------------------------------------------------------------

    async def position(self, bracket_id: str) -> Position | None:
        rows = await self.db.fetch(f"SELECT document FROM {POSITIONS} WHERE bracket_id = %s", (bracket_id,))
        return Position.model_validate_json(rows[0]["document"]) if rows else None

    async def insert(self, position: Position) -> Position:
        """Store a new bracket; if its id is already stored, the stored one wins and is returned."""
        await self.db.execute(
            f"INSERT INTO {POSITIONS} (bracket_id, thread_id, symbol, broker, status, created_at, closed_at, document) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (bracket_id) DO NOTHING",
            self._row(position),
        )
        stored = await self.position(position.bracket_id)
        assert stored is not None  # just written, or already there
        return stored

    async def update(self, position: Position) -> None:
        bracket_id, thread_id, symbol, broker, status, created_at, closed_at, document = self._row(position)
        await self.db.execute(
            f"UPDATE {POSITIONS} SET status = %s, closed_at = %s, document = %s WHERE bracket_id = %s",
            (status, closed_at, document, bracket_id),
        )

    async def positions(
        self,
        *,
        statuses: Iterable[PositionStatus] | None = None,
        symbol: str | None = None,
        thread_id: str | None = None,
        closed_since: datetime | None = None,
    ) -> list[Position]:
        clauses, params = [], []
        if statuses is not None:
            wanted = list(statuses)
            clauses.append(f"status IN ({', '.join(['%s'] * len(wanted))})")
            params.extend(wanted)
        if symbol is not None:
            clauses.append("symbol = %s")
            params.append(symbol)
        if thread_id is not None:
            clauses.append("thread_id = %s")
            params.append(thread_id)
        if closed_since is not None:
            clauses.append("closed_at >= %s")
            params.append(_iso(closed_since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.db.fetch(f"SELECT document FROM {POSITIONS} {where} ORDER BY created_at, bracket_id", params)
        return [Position.model_validate_json(row["document"]) for row in rows]

    async def live_positions(self) -> list[Position]:
        return await self.positions(statuses=("pending", "open"))

    # -- pending approvals ---------------------------------------------------------------------

    # `session`: write inside the caller's transaction (a run's closing rows commit with its audit rows).
    async def set_pending(
        self, thread_id: str, interrupt_id: str, symbol: str, expires_at: datetime | None, proposal: str, *, session: Session | None = None
    ) -> None:
        await (session or self.db).execute(
            f"INSERT INTO {APPROVALS} (thread_id, interrupt_id, symbol, expires_at, proposal) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (thread_id) DO UPDATE SET interrupt_id = excluded.interrupt_id, expires_at = excluded.expires_at, "
            "proposal = excluded.proposal",
            (thread_id, interrupt_id, symbol, _iso(expires_at), proposal),
        )

    async def clear_pending(self, thread_id: str, *, session: Session | None = None) -> None:
        await (session or self.db).execute(f"DELETE FROM {APPROVALS} WHERE thread_id = %s", (thread_id,))

    async def pending(self) -> list[dict[str, str | None]]:
        return await self.db.fetch(f"SELECT thread_id, interrupt_id, symbol, expires_at, proposal FROM {APPROVALS} ORDER BY expires_at")

    # -- runs ------------------------------------------------------------------------------------

    async def claim_run(self, thread_id: str, symbol: str, parent_thread_id: str | None = None, status: RunStatus = "running") -> bool:
        """Write the thread's first run row; False (and nothing written) when it has one already.

        The row goes in before any checkpoint of the thread, so a successful claim also says the thread is new.
        """
        now = _iso(datetime.now(UTC))
        return bool(
            await self.db.execute(
                f"INSERT INTO {RUNS} (thread_id, symbol, status, started_at, updated_at, parent_thread_id) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (thread_id) DO NOTHING",
                (thread_id, symbol, status, now, now, parent_thread_id),
            )
        )

    async def run_started(self, thread_id: str, symbol: str, parent_thread_id: str | None = None, status: RunStatus = "running") -> bool:
        """Record the run as started; True when this wrote the thread's first row."""
        if await self.claim_run(thread_id, symbol, parent_thread_id, status):
            return True
        await self.db.execute(f"UPDATE {RUNS} SET status = %s, updated_at = %s WHERE thread_id = %s", (status, _iso(datetime.now(UTC)), thread_id))
        return False

    async def run_status(
        self, thread_id: str, status: RunStatus, action: str | None = None, reason: str | None = None, *, session: Session | None = None
    ) -> None:
        await (session or self.db).execute(
            f"UPDATE {RUNS} SET status = %s, action = %s, reason = %s, updated_at = %s WHERE thread_id = %s",
            (status, action, reason, _iso(datetime.now(UTC)), thread_id),
        )

    async def runs(self, *, status: str | None = None, symbol: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        clauses, params = [], []
        for column, value in (("status", status), ("symbol", symbol)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self.db.fetch(f"SELECT * FROM {RUNS} {where} ORDER BY started_at DESC LIMIT %s", [*params, limit])

    async def run(self, thread_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetch(f"SELECT * FROM {RUNS} WHERE thread_id = %s", (thread_id,))
        return rows[0] if rows else None

    @staticmethod
    def _row(position: Position) -> tuple[str | None, ...]:
        return (
            position.bracket_id,
            position.thread_id,
            position.symbol,
            position.broker,
            position.status,
            _iso(position.created_at),
            _iso(position.closed_at),
            position.model_dump_json(),
        )


def memory_ledger() -> Ledger:
    """A ledger that lives as long as the process: for runs without a database (Studio, node tests)."""
    db = MemoryDatabase()
    db.execute_now(_SCHEMA)
    return Ledger(db)
