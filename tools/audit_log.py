"""L9: the append-only, hash-chained audit table.

Every row holds the hash of the row before it, and its own hash covers its
sequence number, every column and that previous hash. Changing, inserting or
deleting any row breaks the chain at that row, which `verify` reports. The
database refuses UPDATE and DELETE through triggers; the chain catches what a
superuser does with the triggers switched off.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tools.database import Database, Session

TABLE = "aitrader_audit"
GENESIS = "0" * 64
PAGE = 5_000

_TABLE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    checkpoint_id TEXT,
    node TEXT NOT NULL,
    event TEXT NOT NULL,
    verdict TEXT NOT NULL,
    as_of TEXT,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)"""
_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_thread ON {TABLE} (thread_id, seq)"
_SQLITE_GUARDS = [
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_{op.lower()} BEFORE {op} ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {op} refused'); END"""
    for op in ("UPDATE", "DELETE")
]
_POSTGRES_GUARDS = [
    f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{TABLE} is append-only: % refused', TG_OP; END $$""",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_change ON {TABLE}",
    f"""CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}",
    f"""CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
]
# Serialises appenders across processes: each new row must see the previous row's hash.
_PG_LOCK = "SELECT pg_advisory_xact_lock(7314159265)"


class AuditRecord(BaseModel):
    """One thing that happened: a node's verdict, a tool call, a state change, an operator command."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    checkpoint_id: str | None = None
    node: str
    event: str
    verdict: str
    as_of: datetime | None = None
    recorded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    payload: dict[str, Any] = {}


class AuditRow(BaseModel):
    seq: int
    thread_id: str
    checkpoint_id: str | None
    node: str
    event: str
    verdict: str
    as_of: str | None
    recorded_at: str
    payload: str
    prev_hash: str
    hash: str


class ChainReport(BaseModel):
    rows: int
    intact: bool
    broken_at: int | None = None  # seq of the first row whose link does not hold
    problem: str = ""


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def row_hash(seq: int, columns: tuple[Any, ...], prev_hash: str) -> str:
    body = json.dumps([seq, *columns, prev_hash], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(body.encode()).hexdigest()


def payload_text(payload: dict[str, Any]) -> str:
    """Canonical JSON of a payload: sorted keys, compact, NaN as null (browsers reject NaN)."""
    try:
        return orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits) the standard library still writes
        return json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))


def _columns(record: AuditRecord) -> tuple[Any, ...]:
    payload = payload_text(record.payload)
    return (
        record.thread_id,
        record.checkpoint_id,
        record.node,
        record.event,
        record.verdict,
        _iso(record.as_of),
        _iso(record.recorded_at),
        payload,
    )


_FIELDS = ("thread_id", "checkpoint_id", "node", "event", "verdict", "as_of", "recorded_at", "payload")


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Told of every committed batch, whoever wrote it (a run, the governor): notifications, metrics.
        self.listeners: list[Callable[[list[AuditRecord]], None]] = []

    async def setup(self) -> None:
        async with self.db.transaction() as session:
            if self.db.dialect == "postgres":
                await session.execute(_PG_LOCK)  # CREATE OR REPLACE FUNCTION races between processes
            for statement in [_TABLE, _INDEX, *(_POSTGRES_GUARDS if self.db.dialect == "postgres" else _SQLITE_GUARDS)]:
                await session.execute(statement)

    async def append(self, records: list[AuditRecord], *, then: Callable[[Session], Awaitable[None]] | None = None) -> int:
        """Chain the records after the newest row, in one transaction; returns the last sequence number.

        `then` writes more in the same transaction (a run's status with its closing events: one commit, and
        the two never disagree).
        """
        if not records:
            if then is not None:
                async with self.db.transaction() as session:
                    await then(session)
            return -1
        # Serialised before the lock: other appenders wait only for the chaining and the write.
        columns = [_columns(record) for record in records]
        async with self.db.transaction() as session:
            if self.db.dialect == "postgres":
                await session.execute(_PG_LOCK)
            last = await session.fetch(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1")
            seq, prev = (last[0]["seq"], last[0]["hash"]) if last else (0, GENESIS)
            rows = []
            for values in columns:
                seq += 1
                digest = row_hash(seq, values, prev)
                rows.append((seq, *values, prev, digest))
                prev = digest
            await session.insert_rows(TABLE, ("seq", *_FIELDS, "prev_hash", "hash"), rows)
            if then is not None:
                await then(session)
        for listener in list(self.listeners):
            listener(records)
        return seq

    async def trail(self, thread_id: str, *, after: int = 0, limit: int | None = None) -> list[AuditRow]:
        """A thread's rows in order; `after` a sequence number gives only the newer ones (an event stream resuming)."""
        page = f" LIMIT {int(limit)}" if limit else ""
        rows = await self.db.fetch(f"SELECT * FROM {TABLE} WHERE thread_id = %s AND seq > %s ORDER BY seq{page}", (thread_id, after))
        return [AuditRow.model_validate(row) for row in rows]

    async def rows_after(self, after: int, *, limit: int = 500) -> list[AuditRow]:
        """Every thread's rows after a sequence number, in order: the whole desk's live trail."""
        rows = await self.db.fetch(f"SELECT * FROM {TABLE} WHERE seq > %s ORDER BY seq LIMIT {int(limit)}", (after,))
        return [AuditRow.model_validate(row) for row in rows]

    async def last_seq(self) -> int:
        rows = await self.db.fetch(f"SELECT COALESCE(MAX(seq), 0) AS seq FROM {TABLE}")
        return int(rows[0]["seq"]) if rows else 0

    async def verify(self) -> ChainReport:
        """Walk the whole chain in pages; the first row whose sequence, link or hash is off is reported."""
        expected_seq, prev, count, after = 1, GENESIS, 0, 0
        while True:
            rows = await self.db.fetch(f"SELECT * FROM {TABLE} WHERE seq > %s ORDER BY seq LIMIT {PAGE}", (after,))
            if not rows:
                return ChainReport(rows=count, intact=True)
            for raw in rows:
                row = AuditRow.model_validate(raw)
                count += 1
                problem = ""
                if row.seq != expected_seq:
                    problem = f"row {expected_seq} is missing (next row is {row.seq})"
                elif row.prev_hash != prev:
                    problem = "its previous-hash does not match the row before it"
                elif row.hash != row_hash(row.seq, tuple(getattr(row, f) for f in _FIELDS), row.prev_hash):
                    problem = "its contents do not match its hash (the row was changed)"
                if problem:
                    return ChainReport(rows=count, intact=False, broken_at=row.seq, problem=problem)
                expected_seq, prev, after = row.seq + 1, row.hash, row.seq
