"""One guarded SQLite connection per database file: real transactions and named migrations.

Every write goes through `Database.transaction()`: BEGIN IMMEDIATE ... COMMIT under one lock, or
ROLLBACK when the block raises, so writes that belong together are kept together or not at all.
Reads take the same lock, so no thread reads while another one is half way through a transaction.

Migrations follow simonw/llm's migrations.py: plain functions named `mNNN_what`, applied in list
order, each one and its `_migrations` row in one transaction.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from app.base.errors import NoRoom

Migration = Callable[[sqlite_utils.Database], None]
_NO_ROOM = re.compile(r"disk I/O error|database or disk is full|file too large", re.IGNORECASE)


class _Connection(sqlite3.Connection):
    """A connection whose commit(), rollback() and `with conn:` leave an open transaction() alone:
    sqlite-utils wraps its inserts and updates in `with conn:`, which would end it half way."""

    depth = 0  # open transaction() blocks

    def commit(self) -> None:
        if not self.depth:
            super().commit()

    def rollback(self) -> None:
        if not self.depth:
            super().rollback()

    def __exit__(self, *exc) -> bool:
        return False if self.depth else super().__exit__(*exc)


class Database:
    """One SQLite file (WAL, foreign keys on) behind one connection and one lock; `db` is the
    sqlite-utils view of the same connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: sqlite3 never begins or commits on its own; transaction() does, explicitly
        self.conn: _Connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                                 isolation_level=None, factory=_Connection)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.lock = threading.RLock()
        self.db = sqlite_utils.Database(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises; a nested call joins the outer one."""
        with self.lock:
            if self.conn.depth:
                self.conn.depth += 1
                try:
                    yield self.conn
                finally:
                    self.conn.depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.depth = 1
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _NO_ROOM.search(str(exc)):
                    raise NoRoom("storage_cannot_write", path=str(self.path), error=str(exc)) from exc
                raise
            finally:
                self.conn.depth = 0

    def integrity_ok(self) -> bool:
        with self.lock:
            return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def migrate(database: Database, migrations: list[Migration]) -> list[str]:
    """Apply in order the migrations not yet recorded in `_migrations`, each with its row in one
    transaction (one that fails leaves the database as it was); return the names applied."""
    db = database.db
    if not db["_migrations"].exists():
        with database.transaction():
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at FLOAT)")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for step in migrations:
        name = step.__name__
        if name in done:
            continue
        with database.transaction() as conn:
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue  # another process applied it meanwhile
            step(db)
            if not conn.in_transaction:
                raise RuntimeError(f"migration {name} committed on its own (executescript?)")
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, time.time()])
        applied.append(name)
    return applied
