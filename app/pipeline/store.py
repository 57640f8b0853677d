"""The face store: one SQLite file, the source of truth for people and their faces.

The HNSW index is derived from it and can always be rebuilt. Every change to the gallery
bumps a *generation* counter in the same transaction, so the index can tell it is stale,
and stamps the rows it touched with that generation (removals leave a tombstone), so a
cache can catch up with only what changed since its own generation (`changes_since`).

The store also keeps the recognition log (`sightings`): one row per appearance of a
person, or per track of a stranger. Log writes do not bump the generation (they do not
change who can be recognised); removing a person removes their log rows.

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

SCHEMA_VERSION = 2
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

# Version 2: per-row change stamps and tombstones (incremental sync of caches), the
# embedding version of each face, and the recognition log. Rows from version 1 keep
# stamp 0; `history_from` says that changes before the upgrade cannot be replayed.
_SCHEMA_V2 = """
ALTER TABLE people ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE faces ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE faces ADD COLUMN embedder TEXT NOT NULL DEFAULT '';
CREATE INDEX people_changed ON people(changed);
CREATE INDEX faces_changed ON faces(changed);
CREATE TABLE removed (
    kind       TEXT NOT NULL,     -- 'face' or 'person'
    id         INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX removed_generation ON removed(generation);
CREATE TABLE sightings (
    id         TEXT PRIMARY KEY,  -- made by the writer, so writing a row twice is harmless
    person_id  INTEGER REFERENCES people(id) ON DELETE CASCADE,  -- NULL: a stranger
    started    REAL NOT NULL,
    last_seen  REAL NOT NULL,
    frames     INTEGER NOT NULL,
    similarity REAL NOT NULL,     -- best score of the appearance
    source     TEXT NOT NULL DEFAULT '',
    track      INTEGER,
    station    TEXT NOT NULL DEFAULT ''  -- which workstation saw it
);
CREATE INDEX sightings_started ON sightings(started);
CREATE INDEX sightings_person ON sightings(person_id);
INSERT OR REPLACE INTO meta(key, value)
    SELECT 'history_from', value FROM meta WHERE key = 'generation';
"""

# Steps from version N-1 to N; the store upgrades itself one step at a time.
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2}


@dataclass(frozen=True)
class Person:
    """One enrolled person."""

    id: int
    name: str
    face_count: int
    created: float


@dataclass(frozen=True)
class NewFace:
    """A face to add: its embedding, a small JPEG thumbnail and where it came from.

    ``embedder`` names the pipeline that made the embedding (model and crop), so faces
    made by an older pipeline can be found and re-enrolled.
    """

    embedding: np.ndarray
    thumbnail: bytes | None = None
    source: str = ""
    embedder: str = ""


@dataclass(frozen=True)
class FaceInfo:
    """One stored face, without its embedding (for lists and management)."""

    id: int
    person_id: int
    thumbnail: bytes | None
    source: str
    created: float
    embedder: str


@dataclass(frozen=True)
class Sighting:
    """One row of the recognition log: an appearance of a person, or a stranger's track.

    Attributes
    ----------
    id : str
        Chosen by the writer (a UUID); writing the same row again updates it, so a log
        that is flushed repeatedly, or replayed after a failure, never duplicates rows.
    person_id : int or None
        Who was seen; None for a stranger.
    started, last_seen : float
        Wall-clock times (seconds since the epoch) of the first and last sighting.
    frames : int
        Frames in which the face was seen.
    similarity : float
        The best score of the appearance.
    source : str
        The camera or file.
    track : int or None
        The tracker's id for the face, if any.
    station : str
        The workstation that saw it.
    name : str or None
        The person's *current* name when read back (None for a stranger); ignored when
        writing.
    """

    id: str
    person_id: int | None
    started: float
    last_seen: float
    frames: int
    similarity: float
    source: str = ""
    track: int | None = None
    station: str = ""
    name: str | None = None


@dataclass(frozen=True)
class Gallery:
    """A snapshot of every stored embedding, for building the search index."""

    face_ids: np.ndarray  # (n,) int64
    person_ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, EMBEDDING_DIM) float32, L2-normalised
    names: dict[int, str]  # person id -> name
    generation: int


@dataclass(frozen=True)
class GalleryDelta:
    """What changed in the gallery after a given generation, up to `generation`.

    ``faces`` holds every face added *or moved to another person* since then (with its
    current person); a cache upserts them, drops ``removed_faces``, renames the people
    in ``faces.names`` and forgets ``removed_people``.
    """

    faces: Gallery
    removed_faces: np.ndarray  # (k,) int64
    removed_people: list[int]
    generation: int

    @property
    def empty(self) -> bool:
        """True if nothing changed."""
        return (not self.faces.face_ids.size and not self.removed_faces.size
                and not self.removed_people and not self.faces.names)


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
    def _write(self, *, bump: bool = True) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction; all or nothing.

        Yields the connection and the generation this change will have: rows it
        touches are stamped with it. With *bump* (every change to the gallery) the
        store's generation moves to it on commit; log writes pass ``bump=False``.
        """
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(self._explain(exc)) from None
        try:
            gen = int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
            yield con, gen
            if bump:
                con.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
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
        """Counter bumped by every committed change to the gallery."""
        return int(self._read("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    _PERSON_SQL = ("SELECT p.id, p.name, count(f.id), p.created FROM people p "
                   "LEFT JOIN faces f ON f.person_id = p.id ")

    def people(self) -> list[Person]:
        """Every person, by name, with their number of faces."""
        rows = self._read(self._PERSON_SQL + "GROUP BY p.id ORDER BY p.key")
        return [Person(int(i), n, int(c), float(t)) for i, n, c, t in rows]

    def person(self, name: str) -> Person | None:
        """The person called *name* (case-insensitive), or None."""
        rows = self._read(self._PERSON_SQL + "WHERE p.key = ? GROUP BY p.id",
                          (name_key(normalize_name(name)),))
        return Person(int(rows[0][0]), rows[0][1], int(rows[0][2]), float(rows[0][3])) if rows else None

    def person_by_id(self, person_id: int) -> Person | None:
        """The person with this id, or None (e.g. removed meanwhile)."""
        rows = self._read(self._PERSON_SQL + "WHERE p.id = ? GROUP BY p.id", (int(person_id),))
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

    _FACE_SQL = "SELECT id, person_id, thumbnail, source, created, embedder FROM faces "

    @staticmethod
    def _face_info(row: tuple) -> FaceInfo:  # type: ignore[type-arg]
        i, p, t, s, c, e = row
        return FaceInfo(int(i), int(p), bytes(t) if t is not None else None, s, float(c), e)

    def faces_of(self, person_id: int) -> list[FaceInfo]:
        """Each of a person's faces, oldest first."""
        rows = self._read(self._FACE_SQL + "WHERE person_id = ? ORDER BY id", (int(person_id),))
        return [self._face_info(r) for r in rows]

    def face(self, face_id: int) -> FaceInfo | None:
        """One face by id, or None."""
        rows = self._read(self._FACE_SQL + "WHERE id = ?", (int(face_id),))
        return self._face_info(rows[0]) if rows else None

    def embedder_counts(self) -> dict[str, int]:
        """How many faces each embedding pipeline made ('' for faces from before v2)."""
        return {e: int(n) for e, n in self._read("SELECT embedder, count(*) FROM faces GROUP BY embedder")}

    def faces_not_made_by(self, embedder: str, changed_after: int = -1) -> list[tuple[int, int]]:
        """(face id, person id) of the faces another embedding pipeline made.

        Only faces added or moved after generation *changed_after* (all by default).
        """
        return [(int(f), int(p)) for f, p in self._read(
            "SELECT id, person_id FROM faces WHERE embedder <> ? AND changed > ? ORDER BY id",
            (embedder, changed_after))]

    def gallery(self) -> Gallery:
        """Every embedding with its face and person ids, read in one consistent snapshot."""
        with self._snapshot() as con:
            gen = int(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            names = {int(i): n for i, n in con.execute("SELECT id, name FROM people")}
            rows = con.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
        return self._gallery(rows, names, gen)

    def changes_since(self, generation: int) -> GalleryDelta | None:
        """What changed after *generation*, or None if that history is not kept.

        None means the caller must reload the whole `gallery`: its generation is older
        than the store's history (an upgraded or restored store) or newer than the store
        (another store was put in its place).
        """
        with self._snapshot() as con:
            meta = dict(con.execute("SELECT key, value FROM meta"))
            gen, since = int(meta["generation"]), int(meta.get("history_from", 0))
            if generation < since or generation > gen:
                return None
            names = {int(i): n for i, n in con.execute(
                "SELECT id, name FROM people WHERE changed > ?", (generation,))}
            rows = con.execute("SELECT id, person_id, embedding FROM faces WHERE changed > ? "
                               "ORDER BY id", (generation,)).fetchall()
            # A moved face's person may not have changed: name every person involved.
            for (pid,) in con.execute(
                    "SELECT DISTINCT p.id FROM faces f JOIN people p ON p.id = f.person_id "
                    "WHERE f.changed > ?", (generation,)):
                if int(pid) not in names:
                    names[int(pid)] = con.execute("SELECT name FROM people WHERE id = ?",
                                                  (pid,)).fetchone()[0]
            gone = con.execute("SELECT kind, id FROM removed WHERE generation > ?",
                               (generation,)).fetchall()
        removed_faces = np.array([i for k, i in gone if k == "face"], dtype=np.int64)
        removed_people = [int(i) for k, i in gone if k == "person"]
        return GalleryDelta(self._gallery(rows, names, gen), removed_faces, removed_people, gen)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same state."""
        con = self._con
        try:
            con.execute("BEGIN")
            try:
                yield con
            finally:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from None

    def _gallery(self, rows: list[tuple], names: dict[int, str], gen: int) -> Gallery:  # type: ignore[type-arg]
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
        with self._write() as (con, gen):
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is not None and must_be_new:
                raise PersonError(f"{clean!r} is already enrolled; add photos to them instead")
            if row is None and not create:
                raise PersonError(f"no person named {clean!r}")
            pid = int(row[0]) if row is not None else self._new_person(con, clean, gen)
            ids = self._insert_faces(con, pid, zip(items, blobs), gen)
        return pid, ids

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> dict[str, list[int]]:
        """Add faces for several people in a single transaction (a folder import)."""
        out: dict[str, list[int]] = {}
        prepared = [(normalize_name(n), [(f, _embedding_blob(f.embedding)) for f in fs])
                    for n, fs in batches if fs]
        with self._write() as (con, gen):
            for clean, faces in prepared:
                row = con.execute("SELECT id FROM people WHERE key = ?",
                                  (name_key(clean),)).fetchone()
                pid = int(row[0]) if row else self._new_person(con, clean, gen)
                out.setdefault(clean, []).extend(self._insert_faces(con, pid, faces, gen))
        return out

    @staticmethod
    def _new_person(con: sqlite3.Connection, clean: str, gen: int) -> int:
        return _rowid(con.execute(
            "INSERT INTO people(name, key, created, changed) VALUES (?, ?, ?, ?)",
            (clean, name_key(clean), time.time(), gen)))

    @staticmethod
    def _insert_faces(con: sqlite3.Connection, pid: int, faces: Iterable[tuple[NewFace, bytes]],
                      gen: int) -> list[int]:
        now = time.time()
        return [_rowid(con.execute(
            "INSERT INTO faces(person_id, embedding, thumbnail, source, created, changed, embedder) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (pid, blob, f.thumbnail, f.source, now, gen, f.embedder)))
            for f, blob in faces]

    def rename(self, old: str, new: str) -> Person:
        """Rename a person; the new name must not belong to someone else."""
        old_c, new_c = normalize_name(old), normalize_name(new)
        with self._write() as (con, gen):
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(old_c),)).fetchone()
            if row is None:
                raise PersonError(f"no person named {old_c!r}")
            clash = con.execute("SELECT id FROM people WHERE key = ?", (name_key(new_c),)).fetchone()
            if clash is not None and clash[0] != row[0]:
                raise PersonError(f"{new_c!r} is already enrolled")
            con.execute("UPDATE people SET name = ?, key = ?, changed = ? WHERE id = ?",
                        (new_c, name_key(new_c), gen, row[0]))
        person = self.person(new_c)
        assert person is not None
        return person

    def remove(self, name: str) -> list[int]:
        """Delete a person, all their faces and their log rows; return the removed face ids."""
        clean = normalize_name(name)
        with self._write() as (con, gen):
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is None:
                raise PersonError(f"no person named {clean!r}")
            ids = [int(r[0]) for r in con.execute("SELECT id FROM faces WHERE person_id = ?", row)]
            self._delete_faces(con, ids, gen)
            con.execute("DELETE FROM people WHERE id = ?", row)  # log rows go by cascade
            con.execute("INSERT OR REPLACE INTO removed(kind, id, generation) VALUES ('person', ?, ?)",
                        (row[0], gen))
        self._scrub()
        return ids

    def remove_faces(self, face_ids: Sequence[int]) -> None:
        """Delete single faces (a person left with none stays, with zero faces).

        Raises
        ------
        PersonError
            If any of the faces does not exist (nothing is removed then).
        """
        ids = sorted({int(i) for i in face_ids})
        with self._write() as (con, gen):
            self._require_faces(con, ids)
            self._delete_faces(con, ids, gen)
        self._scrub()

    def move_faces(self, face_ids: Sequence[int], to_name: str, *, create: bool = True) -> Person:
        """Give faces to another person (created if missing and *create*); one transaction.

        Raises
        ------
        PersonError
            If a face does not exist, or the person does not and *create* is False.
        """
        clean = normalize_name(to_name)
        ids = sorted({int(i) for i in face_ids})
        with self._write() as (con, gen):
            self._require_faces(con, ids)
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is None and not create:
                raise PersonError(f"no person named {clean!r}")
            pid = int(row[0]) if row is not None else self._new_person(con, clean, gen)
            con.executemany("UPDATE faces SET person_id = ?, changed = ? WHERE id = ?",
                            [(pid, gen, i) for i in ids])
        person = self.person_by_id(pid)
        assert person is not None
        return person

    @staticmethod
    def _require_faces(con: sqlite3.Connection, ids: Sequence[int]) -> None:
        if not ids:
            raise PersonError("no faces given")
        found = {int(r[0]) for r in con.execute(
            f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(ids))})", ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise PersonError(f"no face with id {', '.join(map(str, missing))}")

    @staticmethod
    def _delete_faces(con: sqlite3.Connection, ids: Sequence[int], gen: int) -> None:
        con.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in ids])
        con.executemany("INSERT OR REPLACE INTO removed(kind, id, generation) VALUES ('face', ?, ?)",
                        [(i, gen) for i in ids])

    def _scrub(self) -> None:
        """Push deleted pages out of the WAL so no biometric bytes linger on disk."""
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # another reader holds the WAL open
            log.debug("checkpoint after delete deferred: %s", exc)

    # -- recognition log --------------------------------------------------------
    def record_sightings(self, rows: Sequence[Sighting]) -> int:
        """Insert or update log rows by id, in one transaction; return how many were written.

        Updating keeps the widest span and the highest counts, so rows written again (a
        retried flush) change nothing. A row of a person removed meanwhile is dropped:
        their log goes with them.
        """
        if not rows:
            return 0
        with self._write(bump=False) as (con, _):
            before = con.total_changes
            con.executemany(
                "INSERT INTO sightings(id, person_id, started, last_seen, frames, similarity, "
                "source, track, station) "
                "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 "
                "WHERE ?2 IS NULL OR EXISTS (SELECT 1 FROM people WHERE id = ?2) "
                "ON CONFLICT(id) DO UPDATE SET started = min(started, excluded.started), "
                "last_seen = max(last_seen, excluded.last_seen), "
                "frames = max(frames, excluded.frames), "
                "similarity = max(similarity, excluded.similarity)",
                [(r.id, r.person_id, float(r.started), float(r.last_seen), int(r.frames),
                  float(r.similarity), r.source, r.track, r.station) for r in rows])
            return con.total_changes - before

    def sightings(self, limit: int = 1000, *, since: float | None = None) -> list[Sighting]:
        """The newest log rows first (at most *limit*), optionally only those seen after *since*."""
        rows = self._read(
            "SELECT s.id, s.person_id, s.started, s.last_seen, s.frames, s.similarity, s.source, "
            "s.track, s.station, p.name FROM sightings s LEFT JOIN people p ON p.id = s.person_id "
            "WHERE s.last_seen >= ? ORDER BY s.started DESC, s.id LIMIT ?",
            (float(since) if since is not None else float("-inf"), int(limit)))
        return [Sighting(i, int(p) if p is not None else None, float(a), float(b), int(f), float(sim),
                         src, int(t) if t is not None else None, st, n)
                for i, p, a, b, f, sim, src, t, st, n in rows]

    def clear_sightings(self, *, before: float | None = None) -> int:
        """Delete log rows (all, or those last seen before *before*); return how many."""
        with self._write(bump=False) as (con, _):
            if before is None:
                cur = con.execute("DELETE FROM sightings")
            else:
                cur = con.execute("DELETE FROM sightings WHERE last_seen < ?", (float(before),))
            n = cur.rowcount
        self._scrub()
        return n


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
