"""The label store: one SQLite database in WAL mode per labeling run.

A label is acknowledged only after its transaction has committed (`synchronous=FULL`), so killing the
server loses no acknowledged label. Tokens, the CSRF secret and the assignment plan live in the database
too, so a restarted server keeps every annotator's link valid; the file is created readable by its owner only
(0600). A label given again (a relabel, or an import of the same annotator and pair) replaces the current one,
and the one it replaces is kept in `label_history` with the time it was replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import CloudftError

SHOWN = ("A", "B", "tie", "skip")
UNORDERED_SOURCE = "import"  # labels imported without their display order: position bias leaves them out

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    pair_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, prompt TEXT NOT NULL,
    response_a TEXT NOT NULL, response_b TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY, token TEXT UNIQUE, source TEXT NOT NULL DEFAULT 'app');
CREATE TABLE IF NOT EXISTS assignments (
    annotator TEXT NOT NULL, pair_id TEXT NOT NULL, position INTEGER NOT NULL, swapped INTEGER NOT NULL,
    served_at REAL, PRIMARY KEY (annotator, pair_id));
CREATE INDEX IF NOT EXISTS assignments_order ON assignments (annotator, position);
CREATE TABLE IF NOT EXISTS labels (
    annotator TEXT NOT NULL, pair_id TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'skip')),
    shown TEXT NOT NULL CHECK (shown IN ('A', 'B', 'tie', 'skip')),
    swapped INTEGER NOT NULL, rationale TEXT NOT NULL DEFAULT '', seconds REAL, created REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'app', PRIMARY KEY (annotator, pair_id));
CREATE TABLE IF NOT EXISTS label_history (
    annotator TEXT NOT NULL, pair_id TEXT NOT NULL, choice TEXT NOT NULL, shown TEXT NOT NULL,
    swapped INTEGER NOT NULL, rationale TEXT NOT NULL DEFAULT '', seconds REAL, created REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'app', replaced REAL NOT NULL);
"""
LABEL_COLUMNS = ("annotator", "pair_id", "choice", "shown", "swapped", "rationale", "seconds", "created", "source")
_VALUE_COLUMNS = ("choice", "shown", "swapped", "rationale", "seconds", "source")  # what a label says (not when)
_VALUE_AT = tuple(LABEL_COLUMNS.index(k) for k in _VALUE_COLUMNS)  # where they are in a label row
_INSERT = (f"INSERT OR REPLACE INTO labels ({', '.join(LABEL_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(LABEL_COLUMNS))})")
_KEEP_OLD = (f"INSERT INTO label_history ({', '.join(LABEL_COLUMNS)}, replaced) SELECT {', '.join(LABEL_COLUMNS)}, ? "
             "FROM labels WHERE annotator = ? AND pair_id = ?")


def unswap(shown: str, swapped: bool) -> str:
    """Map what the annotator picked on screen (A = shown first) back to the pair's original orientation."""
    if shown not in SHOWN:
        raise CloudftError(f"unknown choice '{shown}'", hint="use one of A, B, tie, skip")
    if shown in ("tie", "skip"):
        return shown
    first, second = ("b", "a") if swapped else ("a", "b")
    return first if shown == "A" else second


def pairs_digest(pairs: Sequence[dict]) -> str:
    """A content hash of the pairs a store was created from (to refuse mixing label runs)."""
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda r: r["pair_id"]):
        h.update(json.dumps([p["pair_id"], p["prompt"], p["response_a"], p["response_b"]],
                            ensure_ascii=False).encode())
    return h.hexdigest()


def annotator_names(spec: str) -> list[str]:
    """`--annotators 3` → annotator-1..3; `--annotators alice,bob` → those names."""
    spec = spec.strip()
    if spec.isdigit():
        n = int(spec)
        if n < 1:
            raise CloudftError("--annotators must be at least 1")
        return [f"annotator-{i}" for i in range(1, n + 1)]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if not n.replace("-", "").replace("_", "").replace(".", "").isalnum()]
    if not names or bad:
        raise CloudftError(f"bad --annotators value '{spec}'",
                           hint="give a count (3) or comma-separated names of letters, digits, - _ .")
    if len(set(names)) != len(names):
        raise CloudftError("--annotators lists a name twice")
    return names


def plan_assignments(pair_ids: Sequence[str], names: Sequence[str], overlap: int,
                     seed: int) -> list[tuple[str, str, int, int]]:
    """Give every item `overlap` distinct annotators, balanced round-robin; random order and A/B swap per
    annotator and item. Returns (annotator, pair_id, position, swapped)."""
    if not 1 <= overlap <= len(names):
        raise CloudftError(f"overlap {overlap} needs between 1 and {len(names)} (the number of annotators)",
                           hint="lower --overlap or add annotators")
    rng = random.Random(seed)
    per: dict[str, list[str]] = {n: [] for n in names}
    for i, pid in enumerate(pair_ids):
        for j in range(overlap):
            per[names[(i + j) % len(names)]].append(pid)
    rows = []
    for name, pids in per.items():
        rng.shuffle(pids)
        rows += [(name, pid, pos, int(rng.random() < 0.5)) for pos, pid in enumerate(pids)]
    return rows


class Store:
    """Data access for one labeling run. Safe for many threads and processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pool: "queue.SimpleQueue[sqlite3.Connection]" = queue.SimpleQueue()
        # Writers of this process queue on a lock rather than in SQLite's busy handler, whose growing sleeps
        # make the tail latency explode under many concurrent annotators. Other processes still use SQLite's lock.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        private_file(self.path)
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the label is acknowledged
        c.row_factory = sqlite3.Row
        return c

    @contextmanager
    def conn(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A pooled connection (reused, so the WAL is not checkpointed on every close); `write` wraps the
        block in one IMMEDIATE transaction that commits on success and rolls back on error."""
        try:
            c = self._pool.get_nowait()
        except queue.Empty:
            c = self._connect()
        try:
            if write:
                with self._write_lock:
                    c.execute("BEGIN IMMEDIATE")
                    try:
                        yield c
                    except BaseException:
                        c.execute("ROLLBACK")
                        raise
                    c.execute("COMMIT")
            else:
                yield c
        except BaseException:
            c.close()
            raise
        else:
            self._pool.put(c)

    # -- creation ---------------------------------------------------------------------------------------
    @classmethod
    def open_or_create(cls, path: str | Path, pairs: Sequence[dict], names: Sequence[str], overlap: int,
                       seed: int = 0, extra_meta: Optional[dict] = None) -> "Store":
        """Create the store for `pairs`, or reopen it (same pairs, same annotators) after a restart."""
        store = cls(path)
        store.path.parent.mkdir(parents=True, exist_ok=True)
        digest = pairs_digest(pairs)
        with store.conn() as c:
            c.executescript(_SCHEMA)
        meta = store.meta()
        if meta:
            if meta.get("pairs_sha256") != digest:
                raise CloudftError(f"{store.path} holds labels for different pairs",
                                   hint="use another --db, or the pairs file this store was created from")
            have = [a["name"] for a in store.annotators() if a["token"]]
            if sorted(have) != sorted(names) or int(meta["overlap"]) != overlap:
                raise CloudftError(f"{store.path} was created with annotators {', '.join(have)} "
                                   f"and overlap {meta['overlap']}",
                                   hint="pass the same --annotators/--overlap, or use another --db")
            return store
        rows = plan_assignments([p["pair_id"] for p in pairs], names, overlap, seed)
        with store.conn(write=True) as c:
            store._insert_items(c, pairs)
            c.executemany("INSERT INTO annotators (name, token) VALUES (?, ?)",
                          [(n, secrets.token_urlsafe(18)) for n in names])
            c.executemany("INSERT INTO assignments (annotator, pair_id, position, swapped) VALUES (?, ?, ?, ?)",
                          rows)
            values = {"pairs_sha256": digest, "overlap": str(overlap), "seed": str(seed),
                      "secret": secrets.token_hex(32), "created": str(time.time()), **(extra_meta or {})}
            c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(values.items()))
        return store

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Open an existing store (export, report)."""
        store = cls(path)
        if not store.path.exists():
            raise CloudftError(f"no label store at {store.path}",
                               hint="`cloudft label serve PAIRS` or `cloudft label collect JOB` creates it")
        with store.conn() as c:
            c.executescript(_SCHEMA)
        return store

    @staticmethod
    def _insert_items(c: sqlite3.Connection, pairs: Sequence[dict]) -> None:
        start = c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM items").fetchone()[0]
        rows = []
        for i, p in enumerate(pairs):
            extra = {k: v for k, v in p.items() if k not in ("pair_id", "prompt", "response_a", "response_b")}
            rows.append((p["pair_id"], start + i, json.dumps(p["prompt"], ensure_ascii=False), p["response_a"],
                         p["response_b"], json.dumps(extra, ensure_ascii=False)))
        c.executemany("INSERT OR IGNORE INTO items (pair_id, idx, prompt, response_a, response_b, extra) "
                      "VALUES (?, ?, ?, ?, ?, ?)", rows)

    # -- reads ------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self.conn() as c:
            return {r["key"]: r["value"] for r in c.execute("SELECT key, value FROM meta")}

    def annotators(self) -> list[dict]:
        with self.conn() as c:
            return [dict(r) for r in c.execute("SELECT name, token, source FROM annotators ORDER BY rowid")]

    def annotator_for_token(self, token: str) -> Optional[str]:
        if not token:
            return None
        with self.conn() as c:
            row = c.execute("SELECT name FROM annotators WHERE token = ?", (token,)).fetchone()
        return row["name"] if row else None

    def items(self) -> dict[str, dict]:
        with self.conn() as c:
            rows = c.execute("SELECT * FROM items ORDER BY idx").fetchall()
        return {r["pair_id"]: _item(r) for r in rows}

    def labels(self) -> list[dict]:
        with self.conn() as c:
            return [dict(r) for r in c.execute("SELECT * FROM labels ORDER BY created, annotator")]

    def progress(self, name: str) -> tuple[int, int]:
        """(labelled, assigned) for one annotator."""
        with self.conn() as c:
            total = c.execute("SELECT COUNT(*) FROM assignments WHERE annotator = ?", (name,)).fetchone()[0]
            done = c.execute("SELECT COUNT(*) FROM labels WHERE annotator = ?", (name,)).fetchone()[0]
        return done, total

    def remaining(self) -> int:
        """Assignments not labelled yet, over all annotators."""
        with self.conn() as c:
            return c.execute("SELECT COUNT(*) FROM assignments s LEFT JOIN labels l ON l.annotator = s.annotator "
                             "AND l.pair_id = s.pair_id WHERE l.pair_id IS NULL").fetchone()[0]

    def next_item(self, name: str) -> Optional[dict]:
        """The annotator's next unlabelled item (with its display swap), marking when it was first served."""
        with self.conn() as c:  # read first: the write lock is taken only the first time an item is served
            row = c.execute(
                "SELECT s.pair_id, s.swapped, s.position, s.served_at FROM assignments s LEFT JOIN labels l "
                "ON l.annotator = s.annotator AND l.pair_id = s.pair_id "
                "WHERE s.annotator = ? AND l.pair_id IS NULL ORDER BY s.position LIMIT 1", (name,)).fetchone()
            if row is None:
                return None
            item = _item(c.execute("SELECT * FROM items WHERE pair_id = ?", (row["pair_id"],)).fetchone())
        if row["served_at"] is None:
            with self.conn(write=True) as c:
                c.execute("UPDATE assignments SET served_at = ? WHERE annotator = ? AND pair_id = ? "
                          "AND served_at IS NULL", (time.time(), name, row["pair_id"]))
        item["swapped"] = bool(row["swapped"])
        return item

    # -- writes -----------------------------------------------------------------------------------------
    def record(self, name: str, pair_id: str, shown: str, rationale: str = "") -> dict:
        """Commit one label from the app. Returns it once committed (that is the acknowledgement)."""
        now = time.time()
        with self.conn(write=True) as c:
            a = c.execute("SELECT swapped, served_at FROM assignments WHERE annotator = ? AND pair_id = ?",
                          (name, pair_id)).fetchone()
            if a is None:
                raise CloudftError(f"item '{pair_id}' is not assigned to {name}")
            choice = unswap(shown, bool(a["swapped"]))
            seconds = round(now - a["served_at"], 3) if a["served_at"] else None
            row = (name, pair_id, choice, shown, a["swapped"], rationale, seconds, now, "app")
            c.execute(_KEEP_OLD, (now, name, pair_id))
            c.execute(_INSERT, row)
        return dict(zip(LABEL_COLUMNS, row))

    def import_labels(self, pairs: Sequence[dict], labels: Sequence[dict], source: str,
                      meta: Optional[dict] = None) -> int:
        """Add items and labels collected elsewhere (Ground Truth, `cloudft label import`). Labels carry
        annotator, pair_id, shown, swapped, rationale, seconds (and `created`, when known); in file order, a
        later label of the same annotator and pair replaces the earlier one, which goes to the history, as a
        re-import of changed labels does."""
        with self.conn() as c:
            c.executescript(_SCHEMA)
        with self.conn(write=True) as c:
            self._insert_items(c, pairs)
            for key, value in (meta or {}).items():
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
            c.executemany("INSERT OR IGNORE INTO annotators (name, token, source) VALUES (?, NULL, ?)",
                          sorted({(lab["annotator"], source) for lab in labels}))
            now = time.time()
            for lab in labels:
                row = (lab["annotator"], lab["pair_id"], unswap(lab["shown"], lab["swapped"]), lab["shown"],
                       int(lab["swapped"]), lab.get("rationale") or "", lab.get("seconds"),
                       lab.get("created") or now, source)
                same = c.execute(f"SELECT {', '.join(_VALUE_COLUMNS)} FROM labels WHERE annotator = ? AND "
                                 "pair_id = ?", row[:2]).fetchone()
                if same is not None and tuple(same) == tuple(row[i] for i in _VALUE_AT):
                    continue  # importing the same label again changes nothing
                c.execute(_KEEP_OLD, (now, row[0], row[1]))
                c.execute(_INSERT, row)
        return len(labels)

    def history(self) -> list[dict]:
        """Every label that was replaced, with the time it was replaced (oldest first)."""
        with self.conn() as c:
            return [dict(r) for r in c.execute("SELECT * FROM label_history ORDER BY replaced, annotator")]


def private_file(path: Path) -> None:
    """Create `path` readable and writable by its owner only (tokens and the form secret live in it); an
    existing file that others can read is narrowed to that. SQLite gives its -wal and -shm files the same mode."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:  # not ours to change: SQLite still opens it
        pass


def _item(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["prompt"] = json.loads(d["prompt"])
    d.update(json.loads(d.pop("extra")))
    return d
