"""The run registry: one SQLite table of every run cloudft started, whatever the provider."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import CloudftError
from .paths import registry_path

TERMINAL = {"completed", "failed", "stopped", "interrupted"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    status      TEXT NOT NULL,
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    spec_path   TEXT,
    run_dir     TEXT,
    pid         INTEGER,
    exit_code   INTEGER,
    external_id TEXT,
    meta        TEXT NOT NULL DEFAULT '{}',
    handle      TEXT NOT NULL DEFAULT '{}'
)
"""
_COLUMNS_ADDED = {"handle": "ALTER TABLE runs ADD COLUMN handle TEXT NOT NULL DEFAULT '{}'"}
_JSON = ("meta", "handle")


@dataclass
class RunRecord:
    """One row of the registry. `handle` is the provider's typed run handle as JSON (read it with
    `Provider.handle(record)`); `meta` holds live status details (current stage, failure reason, ...)."""

    run_id: str
    name: str
    provider: str
    status: str
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    spec_path: Optional[str] = None
    run_dir: Optional[str] = None
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    external_id: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)
    handle: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class Registry:
    """Thin data-access layer over the runs table. Safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path else registry_path()
        with self._conn() as c:
            c.execute(_SCHEMA)
            have = {r["name"] for r in c.execute("PRAGMA table_info(runs)")}
            for column, ddl in _COLUMNS_ADDED.items():
                if column not in have:  # a registry written by an earlier cloudft
                    c.execute(ddl)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.row_factory = sqlite3.Row
            yield conn
            conn.commit()
        finally:
            conn.close()

    def add(self, rec: RunRecord) -> RunRecord:
        row = asdict(rec)
        for key in _JSON:
            row[key] = json.dumps(row[key], default=str)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn() as c:
            c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))
        return rec

    def update(self, run_id: str, **changes: Any) -> RunRecord:
        if "meta" in changes:
            merged = self.get(run_id).meta
            merged.update(changes["meta"])
            changes["meta"] = json.dumps(merged)
        changes["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._conn() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*changes.values(), run_id))
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or the one run whose id starts with it (a prefix is taken literally: no
        wildcards, case-sensitive)."""
        if not run_id.strip():
            raise CloudftError("no run id given", hint="`cloudft runs` lists the runs this machine knows")
        with self._conn() as c:
            row = c.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                rows = c.execute(  # not LIKE: '%' and '_' would be wildcards, and LIKE ignores case
                    "SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY created DESC", (len(run_id), run_id)
                ).fetchall()
                if len(rows) == 1:
                    row = rows[0]
                elif len(rows) > 1:
                    raise CloudftError(f"run id '{run_id}' is ambiguous ({len(rows)} runs start with it)",
                                       hint="give more of the id; `cloudft runs` lists them")
        if row is None:
            raise CloudftError(f"no run '{run_id}'", hint="`cloudft runs` lists the runs this machine knows")
        return _record(row)

    def list(self, limit: int = 50, provider: Optional[str] = None) -> list[RunRecord]:
        q = "SELECT * FROM runs"
        args: tuple = ()
        if provider:
            q += " WHERE provider = ?"
            args = (provider,)
        q += " ORDER BY created DESC LIMIT ?"
        with self._conn() as c:
            return [_record(r) for r in c.execute(q, (*args, limit)).fetchall()]

    def find(self, **where: Any) -> list[RunRecord]:
        conds = " AND ".join(f"{k} = ?" for k in where)
        with self._conn() as c:
            rows = c.execute(f"SELECT * FROM runs WHERE {conds} ORDER BY created DESC", tuple(where.values()))
            return [_record(r) for r in rows.fetchall()]


def _record(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    for key in _JSON:
        d[key] = json.loads(d.get(key) or "{}")
    return RunRecord(**d)
