"""SQLite (WAL) durable log behind the in-memory broker.

The broker records changes here as it makes them; `flush()` writes everything recorded since the last
flush in one transaction and only then runs the callbacks that acknowledge sends and settlements, so a
client never hears "done" about something that is not on disk. The reactor calls `flush()` whenever it
runs out of events, which groups all deliveries read in one socket pass into a single commit.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DB_NAME = "servicebus.sqlite3"

ACTIVE, SCHEDULED, DEFERRED = 0, 1, 2
STATE_NAMES = {ACTIVE: "active", SCHEDULED: "scheduled", DEFERRED: "deferred"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    entity TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL, session_id TEXT, message_id TEXT,
    enqueued INTEGER NOT NULL, scheduled INTEGER NOT NULL, expires INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL, ttl INTEGER, priority INTEGER, durable INTEGER NOT NULL,
    ann_count INTEGER NOT NULL, ann BLOB NOT NULL, props BLOB NOT NULL, app BLOB NOT NULL, tail BLOB NOT NULL,
    PRIMARY KEY (entity, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (entity TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS session_state (
    entity TEXT NOT NULL, session_id TEXT NOT NULL, state BLOB, updated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS admin_entities (path TEXT PRIMARY KEY, kind TEXT NOT NULL, doc TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
    entity TEXT NOT NULL, message_id TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (entity, message_id)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "entity, seq, state, session_id, message_id, enqueued, scheduled, expires, delivery_count, ttl, priority, "
    "durable, ann_count, ann, props, app, tail"
)


_INSERT = f"INSERT OR REPLACE INTO messages ({_COLUMNS}) VALUES ({','.join('?' * 17)})"
_UPDATE = "UPDATE messages SET state=?, delivery_count=?, scheduled=? WHERE entity=? AND seq=?"
_DELETE = "DELETE FROM messages WHERE entity=? AND seq=?"
_COUNTER = "INSERT OR REPLACE INTO counters VALUES (?, ?)"
_SESSION = "INSERT OR REPLACE INTO session_state (entity, session_id, state, updated) VALUES (?, ?, ?, ?)"
_DEDUP = "INSERT OR REPLACE INTO dedup VALUES (?, ?, ?)"
_PRUNE_DEDUP = "DELETE FROM dedup WHERE expires <= ?"


@dataclass(slots=True, eq=False)
class StoredMessage:
    """One message as the store keeps it: the columns of the `messages` table."""

    entity: str
    seq: int
    state: int
    session_id: str | None
    message_id: str | None
    enqueued: int
    scheduled: int
    expires: int
    delivery_count: int
    ttl: int | None
    priority: int | None
    durable: bool
    ann_count: int  # elements (keys + values) in `ann`
    ann: bytes  # the sender's message-annotations map content, plus x-opt-deadletter-source once dead-lettered
    props: bytes  # encoded properties section (or empty)
    app: bytes  # encoded application-properties section (or empty)
    tail: bytes  # body sections and footer, as sent


Row = tuple[
    str,
    int,
    int,
    str | None,
    str | None,
    int,
    int,
    int,
    int,
    int | None,
    int | None,
    int,
    int,
    bytes,
    bytes,
    bytes,
    bytes,
]


def _row(m: StoredMessage) -> Row:
    return (
        m.entity, m.seq, m.state, m.session_id, m.message_id, m.enqueued, m.scheduled, m.expires,
        m.delivery_count, m.ttl, m.priority, int(m.durable), m.ann_count, m.ann, m.props, m.app, m.tail,
    )  # fmt: skip


def connect(data_dir: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / DB_NAME, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(session_state)")}
    if "updated" not in columns:  # a store written before session listing
        db.execute("ALTER TABLE session_state ADD COLUMN updated INTEGER NOT NULL DEFAULT 0")
    return db


class Store:
    """Buffers changes made by the broker and commits them in one transaction per flush."""

    def __init__(self, data_dir: Path, synchronous: str = "NORMAL") -> None:
        self._db = connect(data_dir, synchronous)
        self._inserts: list[Row] = []
        self._updates: list[tuple[int, int, int, str, int]] = []
        self._deletes: list[tuple[str, int]] = []
        self._counters: dict[str, int] = {}
        self._sessions: dict[tuple[str, str], tuple[bytes | None, int]] = {}
        self._dedup: list[tuple[str, str, int]] = []
        self._after: list[Callable[[], None]] = []
        self._prune_before = 0
        self._drops: list[str] = []
        self._admin: dict[str, tuple[str, str | None] | None] = {}

    # ------------------------------------------------------------ recording

    def insert(self, m: StoredMessage) -> None:
        self._inserts.append(_row(m))

    def update(self, m: StoredMessage) -> None:
        """Persist the mutable fields: state, delivery count, scheduled time."""
        self._updates.append((m.state, m.delivery_count, m.scheduled, m.entity, m.seq))

    def delete(self, m: StoredMessage) -> None:
        self._deletes.append((m.entity, m.seq))

    def counter(self, entity: str, next_seq: int) -> None:
        self._counters[entity] = next_seq

    def session_state(self, entity: str, session_id: str, state: bytes | None, updated: int) -> None:
        self._sessions[(entity, session_id)] = (state, updated)

    def dedup(self, entity: str, message_id: str, expires: int) -> None:
        self._dedup.append((entity, message_id, expires))

    def drop_entity(self, entity: str) -> None:
        """Forget everything stored for one sub-queue or topic (messages, counter, session states, dedup)."""
        self._drops.append(entity)

    def admin_entity(self, path: str, kind: str, doc: str | None) -> None:
        """Record an entity created or changed at runtime (``doc``), or deleted (None)."""
        self._admin[path] = (kind, doc)

    def forget_admin_entity(self, path: str) -> None:
        self._admin[path] = None

    def load_admin_entities(self) -> list[tuple[str, str, str | None]]:
        return list(self._db.execute("SELECT path, kind, doc FROM admin_entities"))

    def prune_dedup(self, now_ms: int) -> None:
        self._prune_before = now_ms

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after.append(callback)

    # ------------------------------------------------------------ committing

    def flush(self) -> None:
        statements: list[tuple[str, list[Any]]] = []
        for entity in self._drops:
            for table in ("messages", "counters", "session_state", "dedup"):
                statements.append((f"DELETE FROM {table} WHERE entity=?", [(entity,)]))
        if self._inserts:
            statements.append((_INSERT, self._inserts))
        if self._updates:
            statements.append((_UPDATE, self._updates))
        if self._deletes:
            statements.append((_DELETE, self._deletes))
        if self._counters:
            statements.append((_COUNTER, list(self._counters.items())))
        if self._sessions:
            statements.append((_SESSION, [(e, s, v, t) for (e, s), (v, t) in self._sessions.items()]))
        if self._dedup:
            statements.append((_DEDUP, self._dedup))
        for path, change in self._admin.items():
            if change is None:
                statements.append(("DELETE FROM admin_entities WHERE path=?", [(path,)]))
            else:
                statements.append(("INSERT OR REPLACE INTO admin_entities VALUES (?, ?, ?)", [(path, *change)]))
        self._drops, self._admin = [], {}
        if self._prune_before:
            statements.append((_PRUNE_DEDUP, [(self._prune_before,)]))
            self._prune_before = 0
        self._inserts, self._updates, self._deletes = [], [], []
        self._counters, self._sessions, self._dedup = {}, {}, []
        try:
            if len(statements) == 1 and len(statements[0][1]) == 1:
                # One row is its own transaction in autocommit mode; skipping BEGIN/COMMIT matters for
                # one-by-one completions, where each settlement waits for its commit.
                self._db.execute(statements[0][0], statements[0][1][0])
            elif statements:
                self._commit(statements)
        except BaseException:
            # Nothing of this batch is acknowledged: clients time out and retry (sends), or the
            # settlement is not confirmed and the lock runs out (completions).
            self._after = []
            raise
        self._run_callbacks()

    def _commit(self, statements: list[tuple[str, list[Any]]]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _run_callbacks(self) -> None:
        callbacks, self._after = self._after, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("after-commit callback failed")

    # ------------------------------------------------------------ loading

    def load_messages(self) -> Iterator[Row]:
        yield from self._db.execute(f"SELECT {_COLUMNS} FROM messages ORDER BY entity, seq")

    def load_counters(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT entity, next_seq FROM counters"))

    def load_session_states(self) -> Iterator[tuple[str, str, bytes | None, int]]:
        yield from self._db.execute("SELECT entity, session_id, state, updated FROM session_state")

    def load_dedup(self, now_ms: int) -> Iterator[tuple[str, str, int]]:
        self._db.execute("DELETE FROM dedup WHERE expires <= ?", (now_ms,))
        yield from self._db.execute("SELECT entity, message_id, expires FROM dedup")

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class EntityCounts:
    active: int = 0
    scheduled: int = 0
    deferred: int = 0
    dead_lettered: int = 0


DLQ_SUFFIX = "/$deadletterqueue"


def read_counts(data_dir: Path) -> dict[str, EntityCounts]:
    """Per-entity message counts straight from the database (no server needed)."""
    path = data_dir / DB_NAME
    if not path.exists():
        raise FileNotFoundError(f"no emulator store at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT entity, state, COUNT(*) FROM messages GROUP BY entity, state").fetchall()
    finally:
        db.close()
    counts: dict[str, dict[str, int]] = {}
    for entity, state, n in rows:
        if entity.endswith(DLQ_SUFFIX):
            counts.setdefault(entity[: -len(DLQ_SUFFIX)], {})["dead_lettered"] = n
        else:
            slot = counts.setdefault(entity, {})
            name = STATE_NAMES.get(state, "active")
            slot[name] = slot.get(name, 0) + n
    return {entity: EntityCounts(**values) for entity, values in sorted(counts.items())}
