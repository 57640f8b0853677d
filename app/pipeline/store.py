"""The face store: the source of truth for people and their faces, in one of two engines.

`SqliteStore` (one SQLite file in the data directory) is the embedded default; a
``postgresql://`` URL opens `app.pipeline.pgstore.PostgresStore` (directly) or
`app.pipeline.shared.SharedStore` (a workstation's view of a shared gallery, with a local
mirror). All share the `Store` API and its semantics, written once here.

The HNSW index is derived from the store and can always be rebuilt. Every change to the
gallery bumps a *generation* counter in the same transaction, so the index can tell it
is stale, and stamps the rows it touched with that generation (removals leave a
tombstone), so a cache can catch up with only what changed since its own generation
(`changes_since`).

The store also keeps the recognition log (`sightings`): one row per appearance of a
person, or per track of a stranger. Log writes do not bump the generation (they do not
change who can be recognised); removing a person removes their log rows.

Privacy (SQLite): ``secure_delete`` makes SQLite overwrite deleted rows with zeros, and
the WAL is checkpointed after deletes so removed embeddings and thumbnails do not linger.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class GalleryDump:
    """Every row of a gallery, for copying it into another store (migrate, backup, restore).

    ``people`` rows are (id, name, created); ``faces`` rows are (id, person_id, embedding,
    thumbnail, source, created, embedder) with the embedding a unit float32 vector;
    ``sightings`` are log rows with their writer-made ids.
    """

    people: list[tuple[int, str, float]]
    faces: list[tuple[int, int, np.ndarray, bytes | None, str, float, str]]
    sightings: list[Sighting]
    generation: int


@dataclass(frozen=True)
class MergeReport:
    """What `Store.merge` did: people created, faces added or found already there, log rows."""

    people_created: int
    faces_added: int
    faces_present: int
    sightings: int
    people_total: int
    faces_total: int


@dataclass(frozen=True)
class RowDelta:
    """Raw rows changed after a generation, with their change stamps (for a local mirror).

    ``full`` means the rows are the whole gallery (the history did not reach back):
    whatever the mirror holds beyond them is gone. A full delta asked for in bulk
    carries its faces in ``bulk`` instead of ``faces``: their vectors already written to
    a vector file (`app.pipeline.vectorfile`), the rest as arrays.
    """

    people: list[tuple[int, str, float]]
    faces: list[tuple[int, int, np.ndarray, str, float, str]]
    removed: list[tuple[str, int]]
    generation: int
    store_id: str
    full: bool
    bulk: BulkFaces | None = None


@dataclass(frozen=True)
class BulkFaces:
    """A whole gallery's faces for a mirror: vectors in a finished vector file, rows as arrays."""

    writer: Any  # app.pipeline.vectorfile.VectorWriter, finished (not yet installed)
    ids: np.ndarray
    person_ids: np.ndarray
    created: np.ndarray
    text: dict[int, tuple[str, str]]  # face id -> (source, embedder), where not both empty


def embedding_digest(vec: np.ndarray) -> bytes:
    """A face's identity for idempotent copies: SHA-256 of its unit float32 vector."""
    return hashlib.sha256(np.asarray(vec, dtype="<f4").tobytes()).digest()


class Store:
    """What every face store offers, whichever engine holds it.

    The SQL here is written once, with ``?`` parameters, for both engines (SQLite and
    PostgreSQL); a backend supplies its transactions (`_write`, `_snapshot`, `_read`),
    how an embedding is passed and read back (`_vec`, `_unvec`), the upsert of log
    rows, and what it does after rows were deleted (`_scrub`). Semantics, proved by the
    conformance tests against both: every committed change to the gallery bumps the
    generation and stamps the rows it touched with it; removals leave tombstones; names
    are unique case-insensitively; person and face ids are never reused.
    """

    #: Where the store is, for messages (a path, or a URL with the password masked).
    label: str = ""
    #: Whether this connection may change people (False for a recognising workstation).
    can_enroll: bool = True

    @property
    def offline_since(self) -> float | None:
        """When a shared store lost its database (epoch seconds); None while reachable."""
        return None

    # -- backend hooks ------------------------------------------------------------
    def _write(self, *, bump: bool = True) -> AbstractContextManager[tuple[Any, int]]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        raise NotImplementedError

    def _vec(self, unit: np.ndarray) -> object:
        """An embedding (unit float32) as a query parameter."""
        raise NotImplementedError

    def _unvec(self, value: Any, face_id: int) -> np.ndarray:
        """An embedding as read from a row."""
        raise NotImplementedError

    def _upsert_sightings(self, con: Any, rows: Sequence[Sighting]) -> int:
        raise NotImplementedError

    def _scrub(self) -> None:
        """After deleting rows: push the deleted bytes out where the engine allows."""

    def close(self) -> None:
        """Close the connection (idempotent)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            (int(person_id),),
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
            gen = int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            names = {int(i): n for i, n in con.execute("SELECT id, name FROM people").fetchall()}
            rows = con.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
        return self._gallery(rows, names, gen)

    def changes_since(self, generation: int) -> GalleryDelta | None:
        """What changed after *generation*, or None if that history is not kept.

        None means the caller must reload the whole `gallery`: its generation is older
        than the store's history (an upgraded or restored store) or newer than the store
        (another store was put in its place).
        """
        with self._snapshot() as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            gen, since = int(meta["generation"]), int(meta.get("history_from", 0))
            if generation < since or generation > gen:
                return None
            names = {int(i): n for i, n in con.execute(
                "SELECT id, name FROM people WHERE changed > ?", (generation,)).fetchall()}
            rows = con.execute("SELECT id, person_id, embedding FROM faces WHERE changed > ? "
                               "ORDER BY id", (generation,)).fetchall()
            # A moved face's person may not have changed: name every person involved.
            names.update({int(i): n for i, n in con.execute(
                "SELECT p.id, p.name FROM people p WHERE p.id IN "
                "(SELECT person_id FROM faces WHERE changed > ?)", (generation,)).fetchall()})
            gone = con.execute("SELECT kind, id FROM removed WHERE generation > ?",
                               (generation,)).fetchall()
        removed_faces = np.array([i for k, i in gone if k == "face"], dtype=np.int64)
        removed_people = [int(i) for k, i in gone if k == "person"]
        return GalleryDelta(self._gallery(rows, names, gen), removed_faces, removed_people, gen)

    def rows_since(self, generation: int, store_id: str = "",
                   bulk: tuple[Path, str] | None = None) -> RowDelta:
        """The raw rows a mirror needs to catch up from *generation* (all rows if it cannot).

        A mirror of another store (*store_id* differs), or one whose generation is
        outside this store's history, gets every row (``full``). With *bulk* (a folder
        and a file stem), a full delta's vectors are written to a new vector file there
        instead of being returned row by row (``RowDelta.bulk``).
        """
        with self._snapshot() as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            gen, since = int(meta["generation"]), int(meta.get("history_from", 0))
            sid = meta.get("store_id", "")
            full = sid != store_id or generation < since or generation > gen
            after = -1 if full else generation
            people = [(int(i), n, float(c)) for i, n, c in con.execute(
                "SELECT id, name, created FROM people WHERE changed > ? OR id IN "
                "(SELECT person_id FROM faces WHERE changed > ?)", (after, after)).fetchall()]
            if full and bulk is not None:
                return RowDelta(people, [], [], gen, sid, full, self._bulk_faces(con, *bulk))
            faces = self._face_rows(con, after)
            removed = [] if full else [(k, int(i)) for k, i in con.execute(
                "SELECT kind, id FROM removed WHERE generation > ?", (after,)).fetchall()]
        return RowDelta(people, faces, removed, gen, sid, full)

    def _bulk_faces(self, con: Any, folder: Path, stem: str) -> BulkFaces:
        """Every face, its vector written to a new vector file (row by row here)."""
        from app.pipeline.vectorfile import VectorWriter

        rows = self._face_rows(con, -1)
        writer = VectorWriter(folder, stem)
        try:
            n = len(rows)
            ids = np.fromiter((r[0] for r in rows), np.int64, n)
            if n:
                writer.append(ids, np.stack([r[2] for r in rows]))
            writer.finish()
        except BaseException:
            writer.discard()
            raise
        return BulkFaces(writer, ids, np.fromiter((r[1] for r in rows), np.int64, n),
                         np.fromiter((r[4] for r in rows), np.float64, n),
                         {r[0]: (r[3], r[5]) for r in rows if r[3] or r[5]})

    def _face_rows(self, con: Any, after: int) -> list[tuple[int, int, np.ndarray, str, float, str]]:
        return [(int(i), int(p), self._unvec(e, int(i)), s, float(c), b) for i, p, e, s, c, b in
                con.execute("SELECT id, person_id, embedding, source, created, embedder FROM faces "
                            "WHERE changed > ? ORDER BY id", (after,)).fetchall()]

    def _gallery(self, rows: list[tuple], names: dict[int, str], gen: int) -> Gallery:  # type: ignore[type-arg]
        n = len(rows)
        face_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        person_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        emb = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        for k, r in enumerate(rows):
            emb[k] = self._unvec(r[2], int(r[0]))
        return Gallery(face_ids, person_ids, emb, names, gen)

    def _malformed(self, face_id: int) -> StoreError:
        return StoreError(f"the face store {self.label} holds a malformed embedding (face {face_id})")

    # -- changes ----------------------------------------------------------------
    def _check_enroll(self) -> None:
        """Refuse a change to people on a connection that may only recognise."""

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
        vecs = [self._vec(unit_embedding(f.embedding)) for f in items]
        self._check_enroll()
        with self._write() as (con, gen):
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is not None and must_be_new:
                raise PersonError(f"{clean!r} is already enrolled; add photos to them instead")
            if row is None and not create:
                raise PersonError(f"no person named {clean!r}")
            pid = int(row[0]) if row is not None else self._new_person(con, clean, gen)
            ids = self._insert_faces(con, pid, zip(items, vecs), gen)
        return pid, ids

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> dict[str, list[int]]:
        """Add faces for several people in a single transaction (a folder import)."""
        out: dict[str, list[int]] = {}
        prepared = [(normalize_name(n), [(f, self._vec(unit_embedding(f.embedding))) for f in fs])
                    for n, fs in batches if fs]
        self._check_enroll()
        with self._write() as (con, gen):
            for clean, faces in prepared:
                row = con.execute("SELECT id FROM people WHERE key = ?",
                                  (name_key(clean),)).fetchone()
                pid = int(row[0]) if row else self._new_person(con, clean, gen)
                out.setdefault(clean, []).extend(self._insert_faces(con, pid, faces, gen))
        return out

    @staticmethod
    def _new_person(con: Any, clean: str, gen: int, created: float | None = None) -> int:
        return int(con.execute(
            "INSERT INTO people(name, key, created, changed) VALUES (?, ?, ?, ?) RETURNING id",
            (clean, name_key(clean), time.time() if created is None else created, gen)).fetchone()[0])

    @staticmethod
    def _insert_faces(con: Any, pid: int, faces: Iterable[tuple[NewFace, object]], gen: int,
                      created: float | None = None) -> list[int]:
        now = time.time() if created is None else created
        return [int(con.execute(
            "INSERT INTO faces(person_id, embedding, thumbnail, source, created, changed, embedder) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (pid, vec, f.thumbnail, f.source, now, gen, f.embedder)).fetchone()[0])
            for f, vec in faces]

    def rename(self, old: str, new: str) -> Person:
        """Rename a person; the new name must not belong to someone else."""
        old_c, new_c = normalize_name(old), normalize_name(new)
        self._check_enroll()
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
        self._check_enroll()
        with self._write() as (con, gen):
            row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
            if row is None:
                raise PersonError(f"no person named {clean!r}")
            pid = int(row[0])
            ids = [int(r[0]) for r in con.execute(
                "SELECT id FROM faces WHERE person_id = ? ORDER BY id", (pid,)).fetchall()]
            self._delete_faces(con, ids, gen)
            con.execute("DELETE FROM people WHERE id = ?", (pid,))  # log rows go by cascade
            self._tombstone(con, "person", [pid], gen)
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
        self._check_enroll()
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
        self._check_enroll()
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
    def _require_faces(con: Any, ids: Sequence[int]) -> None:
        if not ids:
            raise PersonError("no faces given")
        found = {int(r[0]) for r in con.execute(
            f"SELECT id FROM faces WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()}
        missing = [i for i in ids if i not in found]
        if missing:
            raise PersonError(f"no face with id {', '.join(map(str, missing))}")

    @classmethod
    def _delete_faces(cls, con: Any, ids: Sequence[int], gen: int) -> None:
        if ids:
            con.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in ids])
            cls._tombstone(con, "face", ids, gen)

    @staticmethod
    def _tombstone(con: Any, kind: str, ids: Sequence[int], gen: int) -> None:
        con.executemany("INSERT INTO removed(kind, id, generation) VALUES (?, ?, ?) "
                        "ON CONFLICT (kind, id) DO UPDATE SET generation = excluded.generation",
                        [(kind, int(i), gen) for i in ids])

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
            return self._upsert_sightings(con, rows)

    _SIGHTING_SQL = (
        "SELECT s.id, s.person_id, s.started, s.last_seen, s.frames, s.similarity, s.source, "
        "s.track, s.station, p.name FROM sightings s LEFT JOIN people p ON p.id = s.person_id ")

    @staticmethod
    def _sighting(row: tuple) -> Sighting:  # type: ignore[type-arg]
        i, p, a, b, f, sim, src, t, st, n = row
        return Sighting(i, int(p) if p is not None else None, float(a), float(b), int(f), float(sim),
                        src, int(t) if t is not None else None, st, n)

    def sightings(self, limit: int = 1000, *, since: float | None = None) -> list[Sighting]:
        """The newest log rows first (at most *limit*), optionally only those seen after *since*."""
        rows = self._read(
            self._SIGHTING_SQL + "WHERE s.last_seen >= ? ORDER BY s.started DESC, s.id LIMIT ?",
            (float(since) if since is not None else -1e300, int(limit)))
        return [self._sighting(r) for r in rows]

    def clear_sightings(self, *, before: float | None = None) -> int:
        """Delete log rows (all, or those last seen before *before*); return how many."""
        with self._write(bump=False) as (con, _):
            if before is None:
                cur = con.execute("DELETE FROM sightings")
            else:
                cur = con.execute("DELETE FROM sightings WHERE last_seen < ?", (float(before),))
            n = int(cur.rowcount)
        self._scrub()
        return n

    # -- copying between stores -------------------------------------------------
    def dump(self) -> GalleryDump:
        """Every person, face (with thumbnail) and log row, read in one snapshot."""
        with self._snapshot() as con:
            gen = int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            people = [(int(i), n, float(c)) for i, n, c in con.execute(
                "SELECT id, name, created FROM people ORDER BY id").fetchall()]
            faces = [(int(i), int(p), self._unvec(e, int(i)), bytes(t) if t is not None else None,
                      s, float(c), b) for i, p, e, t, s, c, b in con.execute(
                "SELECT id, person_id, embedding, thumbnail, source, created, embedder FROM faces "
                "ORDER BY id").fetchall()]
            logs = [self._sighting(r) for r in con.execute(
                self._SIGHTING_SQL + "ORDER BY s.started, s.id").fetchall()]
        return GalleryDump(people, faces, logs, gen)

    def merge(self, dump: GalleryDump) -> MergeReport:
        """Copy another store's gallery into this one, in one transaction; idempotent.

        People are matched by name (case-insensitive) and created when missing; a face is
        added unless its person here already has the very same embedding; log rows keep
        their ids (a row copied again is not duplicated). Before committing, every face
        of the dump is looked up again under its person here: if one is missing, nothing
        is committed.

        Raises
        ------
        StoreError
            If the copy could not be verified (nothing is written then).
        """
        self._check_enroll()
        names = {pid: normalize_name(n) for pid, n, _ in dump.people}
        created = {pid: c for pid, _, c in dump.people}
        made = added = present = 0
        with self._write() as (con, gen):
            here: dict[str, int] = {}
            for pid, clean in names.items():
                row = con.execute("SELECT id FROM people WHERE key = ?", (name_key(clean),)).fetchone()
                if row is None:
                    here[clean] = self._new_person(con, clean, gen, created[pid])
                    made += 1
                else:
                    here[clean] = int(row[0])
            known = self._digests(con, list(here.values()))
            for _, src_pid, vec, thumb, source, when, embedder in dump.faces:
                target = here[names[src_pid]]
                digest = embedding_digest(vec)
                if digest in known.setdefault(target, set()):
                    present += 1
                    continue
                face = NewFace(vec, thumb, source, embedder)
                self._insert_faces(con, target, [(face, self._vec(unit_embedding(vec)))], gen, when)
                known[target].add(digest)
                added += 1
            mapped = [replace(s, person_id=here[names[s.person_id]] if s.person_id is not None
                              and s.person_id in names else None) for s in dump.sightings
                      if s.person_id is None or s.person_id in names]
            copied = self._upsert_sightings(con, mapped) if mapped else 0
            again = self._digests(con, list(here.values()))
            for _, src_pid, vec, *_rest in dump.faces:
                if embedding_digest(vec) not in again.get(here[names[src_pid]], set()):
                    raise StoreError(f"copy into {self.label} could not be verified "
                                     f"(a face of {names[src_pid]!r} is missing); nothing was written")
            people_total = int(con.execute("SELECT count(*) FROM people").fetchone()[0])
            faces_total = int(con.execute("SELECT count(*) FROM faces").fetchone()[0])
            if not made and not added:
                raise _NothingToDo(MergeReport(0, 0, present, copied, people_total, faces_total))
        return MergeReport(made, added, present, copied, people_total, faces_total)

    def _digests(self, con: Any, person_ids: Sequence[int]) -> dict[int, set[bytes]]:
        out: dict[int, set[bytes]] = {}
        for start in range(0, len(person_ids), 500):
            chunk = person_ids[start:start + 500]
            for fid, pid, emb in con.execute(
                    f"SELECT id, person_id, embedding FROM faces WHERE person_id IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall():
                out.setdefault(int(pid), set()).add(embedding_digest(self._unvec(emb, int(fid))))
        return out


class _NothingToDo(Exception):
    """Raised inside a merge transaction that changed nothing (rolled back, not bumped)."""

    def __init__(self, report: MergeReport) -> None:
        super().__init__("nothing to copy")
        self.report = report


def merge_into(target: Store, dump: GalleryDump) -> MergeReport:
    """`Store.merge`, where a copy that adds nothing (a repeated migration) is not a change.

    Log rows still reach the target in that case, in their own transaction.
    """
    try:
        return target.merge(dump)
    except _NothingToDo as done:
        r = done.report
        mapped = []
        if dump.sightings:
            ids: dict[int, int] = {}
            for pid, n, _ in dump.people:
                found = target.person(n)
                if found is not None:
                    ids[pid] = found.id
            mapped = [replace(s, person_id=ids[s.person_id] if s.person_id is not None else None)
                      for s in dump.sightings if s.person_id is None or s.person_id in ids]
        copied = target.record_sightings(mapped) if mapped else 0
        return replace(r, sightings=copied)


class SqliteStore(Store):
    """People and their face embeddings in one SQLite file (the embedded default).

    A store belongs to the thread that opened it (SQLite connections are not shared
    between threads here); the GUI worker opens its own.

    Parameters
    ----------
    path : Path
        The database file; created with mode 0600 when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self._vectors: tuple[tuple[str, bool], Any] | None = None  # a mirror's vector file
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

    def __enter__(self) -> SqliteStore:
        return self

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

    def _vec(self, unit: np.ndarray) -> object:
        return unit.astype("<f4").tobytes()

    def _unvec(self, value: Any, face_id: int) -> np.ndarray:
        v = np.frombuffer(value, dtype="<f4")
        if v.size != EMBEDDING_DIM:
            raise self._malformed(face_id)
        return v

    def _scrub(self) -> None:
        """Push deleted pages out of the WAL so no biometric bytes linger on disk."""
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # another reader holds the WAL open
            log.debug("checkpoint after delete deferred: %s", exc)

    def _upsert_sightings(self, con: Any, rows: Sequence[Sighting]) -> int:
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
        return int(con.total_changes - before)

    # -- a local mirror of a shared store (see app.pipeline.shared) -------------
    def mirror_meta(self) -> dict[str, str]:
        """The mirror's bookkeeping: ``upstream`` generation and ``store_id`` it reflects."""
        return {k[len("mirror_"):]: v for k, v in self._read(
            "SELECT key, value FROM meta WHERE key LIKE 'mirror_%'")}

    def record_meta(self, key: str, value: str) -> None:
        """Keep a note about the shared store in the mirror (e.g. whether it may enroll)."""
        with self._write(bump=False) as (con, _):
            con.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                        "SET value = excluded.value", (f"mirror_{key}", value))

    def mirror_apply(self, delta: RowDelta) -> bool:
        """Make this store hold what *delta* says the shared store holds; one transaction.

        Rows keep their ids; they are stamped with this store's own next generation,
        so caches of this file (the index) catch up through `changes_since` as after
        any local change. False if another thread or process applied it first.

        A bulk delta's vector file is put in place inside the same transaction (its rows
        hold empty embeddings: "in the vector file"), and the file it replaces is removed
        after the commit, the vectors of faces no longer in the gallery zeroed first.
        """
        bulk = delta.bulk
        try:
            removed = self._mirror_apply(delta)
        except _NothingToApply:
            if bulk is not None:
                bulk.writer.discard()
            return False
        except BaseException:
            if bulk is not None:
                bulk.writer.discard()
            raise
        if bulk is not None or removed:
            self._tidy_vectors(removed)
        if removed:
            self._scrub()
        return True

    # -- the vector file of a mirror (app.pipeline.vectorfile) ------------------------
    def _vector_file(self, name: str | None, *, writable: bool = False) -> Any:
        """The mirror's vector file called *name* (None if it has none)."""
        from app.pipeline.vectorfile import VectorFile

        if not name:
            return None
        key = (name, writable)
        cached = getattr(self, "_vectors", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        vf = VectorFile(self.path.parent / name, writable=writable)
        self._vectors = (key, vf)
        return vf

    def _tidy_vectors(self, removed: list[int]) -> None:
        """Zero removed faces' vectors; delete vector files no longer pointed at."""
        from app.pipeline.vectorfile import remove_unused

        with self._write(bump=False) as (con, _):
            row = con.execute("SELECT value FROM meta WHERE key = 'mirror_vectors'").fetchone()
            name = row[0] if row else None
            ids = np.asarray(removed, np.int64)
            if name and len(ids):
                self._vector_file(name, writable=True).zero(ids)
            # The faces of the replaced file that are gone were listed in *removed*.
            remove_unused(self.path.parent, self.path.stem, name, ids)

    def _gallery(self, rows: list[tuple], names: dict[int, str], gen: int) -> Gallery:  # type: ignore[type-arg]
        """As `Store._gallery`; empty embeddings are read from the mirror's vector file."""
        empty = [k for k, r in enumerate(rows) if not r[2]]
        if not empty:
            return super()._gallery(rows, names, gen)
        n = len(rows)
        face_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        person_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        emb = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        for k, r in enumerate(rows):
            if r[2]:
                emb[k] = self._unvec(r[2], int(r[0]))
        where = np.array(empty, np.int64)
        vf = self._vector_file(self.mirror_meta().get("vectors"))
        found = vf.rows_of(face_ids[where]) if vf is not None else np.full(len(where), -1)
        if np.any(found < 0):
            raise _StaleVectors(self.label)
        order = np.argsort(found, kind="stable")  # read the file front to back
        emb[where[order]] = vf.vectors[found[order]]
        # A zero vector: removed (and overwritten) since the rows were read.
        keep = np.any(emb != 0, axis=1)
        if not keep.all():
            face_ids, person_ids, emb = face_ids[keep], person_ids[keep], emb[keep]
        return Gallery(face_ids, person_ids, emb, names, gen)

    def gallery(self) -> Gallery:
        """Every embedding with its face and person ids, read in one consistent snapshot."""
        for attempt in range(3):
            try:
                return super().gallery()
            except _StaleVectors:  # a reload replaced the vector file meanwhile: read again
                self._vectors = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def changes_since(self, generation: int) -> GalleryDelta | None:  # noqa: D102 - as Store
        for attempt in range(3):
            try:
                return super().changes_since(generation)
            except _StaleVectors:
                self._vectors = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _mirror_apply(self, delta: RowDelta) -> list[int]:
        """Apply *delta*; return the ids of the faces it removed (with removed people's)."""
        bulk = delta.bulk
        with self._write() as (con, gen):
            meta = dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'mirror_%'").fetchall())
            same_store = meta.get("mirror_store_id") == delta.store_id
            if same_store and not delta.full and int(meta.get("mirror_upstream", -1)) >= delta.generation:
                raise _NothingToApply
            if same_store and delta.full and bulk is not None and \
                    int(meta.get("mirror_upstream", -1)) == delta.generation and meta.get("mirror_vectors"):
                raise _NothingToApply  # another process copied this very generation first
            removed_faces = [i for k, i in delta.removed if k == "face"]
            removed_people = [i for k, i in delta.removed if k == "person"]
            if delta.full:
                # A reload (a restored or replaced database): an id may now be someone
                # else. Log rows queued for a person whose name changed are dropped rather
                # than sent under the wrong person.
                old_keys = {int(i): k for i, k in con.execute("SELECT id, key FROM people").fetchall()}
                renamed = [i for i, n, _ in delta.people if old_keys.get(i, name_key(n)) != name_key(n)]
                if renamed:
                    dropped = sum(con.execute("DELETE FROM sightings WHERE person_id = ?", (i,)).rowcount
                                  for i in renamed)
                    if dropped:
                        log.warning("dropped %d queued log rows of people the reloaded gallery "
                                    "names differently", dropped)
                keep_p = {p[0] for p in delta.people}
                keep_f = bulk.ids if bulk is not None else np.array([f[0] for f in delta.faces], np.int64)
                removed_people += [int(i) for (i,) in con.execute("SELECT id FROM people").fetchall()
                                   if int(i) not in keep_p]
                have = np.array([i for (i,) in con.execute("SELECT id FROM faces").fetchall()], np.int64)
                removed_faces += np.setdiff1d(have, keep_f).tolist()
            if removed_people:
                # Their faces go with them (ON DELETE CASCADE): list them for the vector file.
                for start in range(0, len(removed_people), 500):
                    chunk = removed_people[start:start + 500]
                    removed_faces += [int(i) for (i,) in con.execute(
                        f"SELECT id FROM faces WHERE person_id IN ({','.join('?' * len(chunk))})",
                        chunk).fetchall()]
                removed_faces = sorted(set(removed_faces))
            self._delete_faces(con, removed_faces, gen)
            if removed_people:
                con.executemany("DELETE FROM people WHERE id = ?", [(i,) for i in removed_people])
                self._tombstone(con, "person", removed_people, gen)
            # Names may swap between people within one delta: park the changed ones under
            # keys no real name has (control characters are refused in names) first.
            con.executemany("UPDATE people SET key = ? WHERE id = ?",
                            [(f"\x01{i}", i) for i, _, _ in delta.people])
            con.executemany(
                "INSERT INTO people(id, name, key, created, changed) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET name = excluded.name, key = excluded.key, "
                "changed = excluded.changed",
                [(i, n, name_key(n), c, gen) for i, n, c in delta.people])
            upsert = ("INSERT INTO faces(id, person_id, embedding, source, created, changed, embedder) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                      "person_id = excluded.person_id, changed = excluded.changed"
                      + (", embedding = excluded.embedding, source = excluded.source, "
                         "created = excluded.created, embedder = excluded.embedder" if delta.full else ""))
            # The shared store checked these vectors when they were written.
            con.executemany(upsert, ((i, p, np.asarray(e, "<f4").tobytes(), s, c, gen, b)
                                     for i, p, e, s, c, b in delta.faces))
            extra = []
            if bulk is not None:
                text = bulk.text
                # An empty embedding: the vector is in the vector file installed here.
                con.executemany(upsert, (
                    (i, p, b"", text.get(i, ("", ""))[0], c, gen, text.get(i, ("", ""))[1])
                    for i, p, c in zip(bulk.ids.tolist(), bulk.person_ids.tolist(),
                                       bulk.created.tolist(), strict=True)))
                extra.append(("mirror_vectors", bulk.writer.install()))
            elif delta.full:
                extra.append(("mirror_vectors", ""))
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                            "SET value = excluded.value",
                            [("mirror_upstream", str(delta.generation)),
                             ("mirror_store_id", delta.store_id)] + extra
                            # After a reload, caches of this mirror reload too (ids may
                            # have changed meaning): its history starts here.
                            + ([("history_from", str(gen))] if delta.full else []))
        self._vectors = None
        return removed_faces

    def mirror_unsent(self) -> list[Sighting]:
        """Log rows recorded here and not yet confirmed by the shared store (oldest first)."""
        return [self._sighting(r) for r in self._read(self._SIGHTING_SQL + "ORDER BY s.started, s.id")]

    def mirror_sent(self, rows: Sequence[Sighting]) -> None:
        """Forget log rows the shared store has confirmed, unless they grew meanwhile."""
        with self._write(bump=False) as (con, _):
            con.executemany(
                "DELETE FROM sightings WHERE id = ? AND started >= ? AND last_seen <= ? "
                "AND frames <= ? AND similarity <= ?",
                [(r.id, r.started, r.last_seen, r.frames, r.similarity) for r in rows])


class _NothingToApply(Exception):
    """A mirror was already up to date when its write lock was taken."""


class _StaleVectors(StoreError):
    """A mirror's rows point into a vector file that a reload replaced meanwhile."""

    def __init__(self, label: str) -> None:
        super().__init__(f"the gallery copy {label} changed while it was read")


#: The name the SQLite store had before there were other backends.
FaceStore = SqliteStore


def unit_embedding(vec: np.ndarray) -> np.ndarray:
    """Validate an embedding and scale it to unit length (float32).

    Raises
    ------
    ValueError
        If it is not `EMBEDDING_DIM` finite numbers, or all zeros.
    """
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    if v.size != EMBEDDING_DIM or not np.all(np.isfinite(v)):
        raise ValueError(f"an embedding must be {EMBEDDING_DIM} finite floats")
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ValueError("an embedding cannot be all zeros")
    out: np.ndarray = (v / n).astype(np.float32)
    return out


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether a store location is a database URL rather than a file path."""
    return "://" in str(location)


def open_store(location: str | os.PathLike[str], *, cache_dir: Path | None = None,
               background: bool = True) -> Store:
    """Open the store at a path (SQLite) or a ``postgresql://`` URL.

    Parameters
    ----------
    location : str or Path
        A SQLite file, or a PostgreSQL URL (credentials may come from the URL, a
        passfile or a service file, as libpq reads them).
    cache_dir : Path, optional
        For a URL: a workstation's data directory. The store is then a `SharedStore`
        that keeps a local mirror there (recognition goes on while the database is
        away); without it, a direct connection.
    background : bool
        For a `SharedStore`: sync the mirror now and keep it current from a background
        thread (recognition needs that); False for a short command that only reads or
        changes people (reads then come from the database, or the mirror while it is away).

    Raises
    ------
    StoreError
        If it cannot be opened, or the URL's scheme is not supported.
    """
    from app.pipeline.backup import remove_stale_temps

    text = str(location)
    # Plaintext copies of a gallery that a killed backup or restore left go first.
    folder = Path(text).parent if not is_url(text) else cache_dir
    if folder is not None:
        remove_stale_temps(folder)
    if not is_url(text):
        return SqliteStore(Path(text))
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise StoreError(f"unsupported store URL scheme {scheme!r}: use postgresql://...")
    if cache_dir is not None:
        from app.pipeline.shared import SharedStore

        return SharedStore(text, cache_dir, background=background)
    from app.pipeline.pgstore import PostgresStore

    return PostgresStore(text)
