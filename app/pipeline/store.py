"""The face store: one SQLite file, the source of truth for people and their faces.

The HNSW index is derived from it and can always be rebuilt. Every change bumps a
*generation* counter in the same transaction, so the index can tell it is stale.

Privacy: ``secure_delete`` makes SQLite overwrite deleted rows with zeros, and the WAL
is checkpointed after deletes so removed embeddings and thumbnails do not linger.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.pipeline.errors import PersonError, StoreBusyError, StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EMBEDDING_DIM = 512
MAX_NAME_LENGTH = 64
#: How long a write waits for another process to finish its own (FACEREC_LOCK_TIMEOUT_MS).
BUSY_TIMEOUT_MS = int(os.environ.get("FACEREC_LOCK_TIMEOUT_MS", "5000"))

_SCHEMA_V1 = """
CREATE TABLE people (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: live tracks hold ids
    name    TEXT NOT NULL,
    key     TEXT NOT NULL UNIQUE,  -- name_key(name): case-insensitive in every script
    created REAL NOT NULL
);
CREATE TABLE faces (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids are index labels
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    thumbnail BLOB,
    source    TEXT NOT NULL DEFAULT '',
    created   REAL NOT NULL
);
CREATE INDEX faces_person ON faces(person_id);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta(key, value) VALUES ('generation', '0');
"""

# Steps from version N-1 to N; the store upgrades itself one step at a time.
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}


@dataclass(frozen=True)
class Person:
    """One enrolled person."""

    id: int
    name: str
    face_count: int
    created: float


@dataclass(frozen=True)
class NewFace:
    """A face to add: its embedding, a small JPEG thumbnail and where it came from."""

    embedding: np.ndarray
    thumbnail: bytes | None = None
    source: str = ""


@dataclass(frozen=True)
class Gallery:
    """A snapshot of every stored embedding, for building the search index."""

    face_ids: np.ndarray  # (n,) int64
    person_ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, EMBEDDING_DIM) float32, L2-normalised
    names: dict[int, str]  # person id -> name
    generation: int


def name_key(name: str) -> str:
    """The lookup key of a (normalised) name: case-folded, so "Émile" finds "émile"."""
    return unicodedata.normalize("NFC", name.casefold())


def normalize_name(name: str) -> str:
    """Validate and canonicalise a person's name.

    Raises
    ------
    PersonError
        If the name is empty, too long or contains control characters.
    """
    clean = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not clean:
        raise PersonError("a name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise PersonError(f"a name can have at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in clean):
        raise PersonError("a name cannot contain control characters")
    return clean


class FaceStore:
    """People and their face embeddings in one SQLite file.

    A store belongs to the thread that opened it (SQLite connections are not shared
    between threads here); the GUI worker opens its own.

    Parameters
    ----------
    path : Path
        The database file; created with mode 0600 when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con = self._connect()

    # -- connection -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        new = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if new:
                # Create the file owner-only before SQLite writes anything into it.
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            con = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
            con.execute("PRAGMA foreign_keys = ON")
            con.execute("PRAGMA secure_delete = ON")
            self._enable_wal(con)
            con.execute("PRAGMA synchronous = FULL")
            self._migrate(con)
            con.execute("SELECT count(*) FROM people").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot open the face store {self.path}: {exc.strerror or exc}") from None
        return con

    @staticmethod
    def _enable_wal(con: sqlite3.Connection) -> None:
        """Switch to WAL, waiting up to the lock timeout for other processes.

        SQLite answers a journal-mode change with "database is locked" at once, without
        calling the busy handler, while another connection has the file open, so two
        processes creating a new store at the same moment would fail; wait here instead.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.002
        while True:
            try:
                mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
                continue
            if mode != "wal":  # e.g. a file system without shared memory
                log.warning("face store journal mode is %s, not wal", mode)
            return

    def _explain(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (f"the face store {self.path} is in use by another facerec process; "
                    "try again when it has finished")
        if "not a database" in text or "malformed" in text:
            return (f"the face store {self.path} is damaged ({text}); restore it from a "
                    "backup or move it away to start a new one")
        return f"face store {self.path}: {text}"

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Bring the schema up to `SCHEMA_VERSION`, one step per transaction.

        The version is read again under the write lock: two processes opening a new
        store at once must not both create it.
        """
        if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the face store {self.path} was written by a newer facerec "
                    f"(schema {version} > {SCHEMA_VERSION}); upgrade facerec"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                log.info("upgrading face store %s to schema %d", self.path, step)
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {step}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection (idempotent)."""
        con, self._con = self._con, None  # type: ignore[assignment]
        if con is not None:
            con.close()

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that also bumps the generation; all or nothing."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(self._explain(exc)) from None
        try:
            yield con
            con.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:  # a failed COMMIT may already have rolled back
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):  # disk full, I/O error, read-only...
                raise StoreError(self._explain(exc)) from None
            raise

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from None

    # -- queries ----------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Counter bumped by every committed change."""
        return int(self._read("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def people(self) -> list[Person]:
        """Every person, by name, with their number of faces."""
        rows = self._read(
            "SELECT p.id, p.name, count(f.id), p.created FROM people p "
            "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.key"
        )
        return [Person(int(i), n, int(c), float(t)) for i, n, c, t in rows]

    def person(self, name: str) -> Person | None:
        """The person called *name* (case-insensitive), or None."""
        rows = self._read(
            "SELECT p.id, p.name, count(f.id), p.created FROM people p "
            "LEFT JOIN faces f ON f.person_id = p.id WHERE p.key = ? GROUP BY p.id",
            (name_key(normalize_name(name)),),
        )
        return Person(int(rows[0][0]), rows[0][1], int(rows[0][2]), float(rows[0][3])) if rows else None

    def face_count(self) -> int:
        """Total number of stored faces."""
        return int(self._read("SELECT count(*) FROM faces")[0][0])

    def thumbnail(self, person_id: int) -> bytes | None:
        """The JPEG thumbnail of the person's first face, if any."""
        rows = self._read(
            "SELECT thumbnail FROM faces WHERE person_id = ? AND thumbnail IS NOT NULL "
            "ORDER BY id LIMIT 1",
            (person_id,),
        )
        return bytes(rows[0][0]) if rows else None

    def faces_of(self, person_id: int) -> list[tuple[int, bytes | None, str, float]]:
        """(face id, thumbnail, source, created) for each of a person's faces."""
        rows = self._read(
            "SELECT id, thumbnail, source, created FROM faces WHERE person_id = ? ORDER BY id",
            (person_id,),
        )
        return [(int(i), bytes(t) if t is not None else None, s, float(c)) for i, t, s, c in rows]

    def gallery(self) -> Gallery:
        """Every embedding with its face and person ids, read in one consistent snapshot."""
        con = self._con
        try:
            con.execute("BEGIN")
            try:
                gen = int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
                names = {int(i): n for i, n in con.execute("SELECT id, name FROM people")}
                rows = con.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
            finally:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from None
        n = len(rows)
        face_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        person_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        emb = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        for k, r in enumerate(rows):
            v = np.frombuffer(r[2], dtype=np.float32)
            if v.size != EMBEDDING_DIM:
                raise StoreError(f"the face store {self.path} holds a malformed embedding (face {r[0]})")
            emb[k] = v
        return Gallery(face_ids, person_ids, emb, names, gen)

    # -- changes ----------------------------------------------------------------
    def add_faces(
        self, name: str, faces: Iterable[NewFace], *, create: bool = True, must_be_new: bool = False
    ) -> tuple[int, list[int]]:
        """Add faces to a person in one transaction, creating the person if needed.

        Parameters
        ----------
        name : str
            The person's name (validated, case-insensitive match).
        faces : iterable of NewFace
            At least one face.
        create : bool
            Create the person if missing; if False a missing person is an error.
        must_be_new : bool
            Refuse if the person already exists (no silent merge).

        Returns
        -------
        person_id, face_ids
        """
        clean = normalize_name(name)
        items = list(faces)
        if not items:
            raise PersonError("no faces to add")
        blobs = [_embedding_blob(f.embedding) for f in items]
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is not None and must_be_new:
                raise PersonError(f"{clean!r} is already enrolled; add photos to them instead")
            if row is None:
                if not create:
                    raise PersonError(f"no person named {clean!r}")
                pid = _rowid(con.execute("INSERT INTO people(name, key, created) VALUES (?, ?, ?)",
                                         (clean, name_key(clean), now)))
            else:
                pid = int(row[0])
            ids = []
            for f, blob in zip(items, blobs):
                cur = con.execute(
                    "INSERT INTO faces(person_id, embedding, thumbnail, source, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (pid, blob, f.thumbnail, f.source, now),
                )
                ids.append(_rowid(cur))
        return pid, ids

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> dict[str, list[int]]:
        """Add faces for several people in a single transaction (a folder import)."""
        out: dict[str, list[int]] = {}
        prepared = [(normalize_name(n), [(_embedding_blob(f.embedding), f) for f in fs])
                    for n, fs in batches if fs]
        now = time.time()
        with self._write() as con:
            for clean, faces in prepared:
                row = con.execute("SELECT id FROM people WHERE key = ?",
                                  (name_key(clean),)).fetchone()
                pid = int(row[0]) if row else _rowid(con.execute(
                    "INSERT INTO people(name, key, created) VALUES (?, ?, ?)",
                    (clean, name_key(clean), now)))
                ids = out.setdefault(clean, [])
                for blob, f in faces:
                    ids.append(_rowid(con.execute(
                        "INSERT INTO faces(person_id, embedding, thumbnail, source, created) "
                        "VALUES (?, ?, ?, ?, ?)", (pid, blob, f.thumbnail, f.source, now))))
        return out

    def rename(self, old: str, new: str) -> Person:
        """Rename a person; the new name must not belong to someone else."""
        old_c, new_c = normalize_name(old), normalize_name(new)
        with self._write() as con:
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(old_c),)).fetchone()
            if row is None:
                raise PersonError(f"no person named {old_c!r}")
            clash = con.execute("SELECT id FROM people WHERE key = ?", (name_key(new_c),)).fetchone()
            if clash is not None and clash[0] != row[0]:
                raise PersonError(f"{new_c!r} is already enrolled")
            con.execute("UPDATE people SET name = ?, key = ? WHERE id = ?",
                        (new_c, name_key(new_c), row[0]))
        person = self.person(new_c)
        assert person is not None
        return person

    def remove(self, name: str) -> list[int]:
        """Delete a person and all their faces; return the removed face ids."""
        clean = normalize_name(name)
        with self._write() as con:
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is None:
                raise PersonError(f"no person named {clean!r}")
            ids = [int(r[0]) for r in con.execute("SELECT id FROM faces WHERE person_id = ?", row)]
            con.execute("DELETE FROM faces WHERE person_id = ?", row)
            con.execute("DELETE FROM people WHERE id = ?", row)
        self._scrub()
        return ids

    def remove_faces(self, face_ids: Sequence[int]) -> None:
        """Delete single faces (a person left with none stays, with zero faces)."""
        with self._write() as con:
            con.executemany("DELETE FROM faces WHERE id = ?", [(int(i),) for i in face_ids])
        self._scrub()

    def _scrub(self) -> None:
        """Push deleted pages out of the WAL so no biometric bytes linger on disk."""
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # another reader holds the WAL open
            log.debug("checkpoint after delete deferred: %s", exc)


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just created."""
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


def _embedding_blob(vec: np.ndarray) -> bytes:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    if v.size != EMBEDDING_DIM or not np.all(np.isfinite(v)):
        raise ValueError(f"an embedding must be {EMBEDDING_DIM} finite floats")
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ValueError("an embedding cannot be all zeros")
    return (v / n).astype("<f4").tobytes()
