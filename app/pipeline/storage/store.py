"""The face store: the source of truth for people and their faces, in one of two engines.

`SqliteStore` (one SQLite file in the data directory) is the embedded default; a
``postgresql://`` URL opens `app.pipeline.storage.pgstore.PostgresStore` (directly) or
`app.pipeline.storage.shared.SharedStore` (a workstation's view of a shared gallery, with a local
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

import errno
import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import PersonError, StoreBusyError, StoreError
from app.pipeline.types import (  # noqa: F401 - re-exported: the store's own types
    EMBEDDING_DIM,
    MAX_NAME_LENGTH,
    FaceInfo,
    Gallery,
    GalleryDelta,
    NewFace,
    Person,
    Sighting,
    name_key,
    normalize_name,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
#: How far a stored embedding's length may be from 1: they are stored as unit float32
#: vectors (centred on the mean face, then normalised: `app.pipeline.recognition.embedder`), whose
#: length is 1 within ~1e-6; one flipped exponent bit moves it by far more.
UNIT_TOLERANCE = 1e-3
#: Bytes of a stored embedding in SQLite (schema 3+): 512 little-endian float32, then
#: the CRC-32 of those bytes (little-endian), so a flipped bit anywhere is caught.
_BLOB_BYTES = EMBEDDING_DIM * 4 + 4
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


def _schema_v3(con: sqlite3.Connection) -> None:
    """Version 3: name keys that keep "ß" apart from "SS", and checksummed embeddings.

    Keys become `name_key` (NFC, then lower case; `str.casefold` made "Weiß" and "WEISS"
    one person). Names equal under the new key were equal under the old one, so the
    keys stay unique. Each embedding gets its CRC-32 appended (`_BLOB_BYTES`); a blob of
    another length is left as it is (it is quarantined when read), and an empty one (a
    mirror's face whose vector is in its vector file) stays empty.
    """
    rows = con.execute("SELECT id, name FROM people").fetchall()
    con.executemany("UPDATE people SET key = ? WHERE id = ?", [(f"\x01{i}", i) for i, _ in rows])
    con.executemany("UPDATE people SET key = ? WHERE id = ?", [(name_key(n), i) for i, n in rows])
    last = -1
    while True:
        chunk = con.execute("SELECT id, embedding FROM faces WHERE id > ? ORDER BY id LIMIT 2000",
                            (last,)).fetchall()
        if not chunk:
            break
        last = int(chunk[-1][0])
        con.executemany("UPDATE faces SET embedding = ? WHERE id = ?",
                        [(_with_crc(bytes(e)), i) for i, e in chunk if len(e) == EMBEDDING_DIM * 4])


def stored_embedding(raw: bytes, version: int = SCHEMA_VERSION) -> np.ndarray:
    """The float32 embedding in a blob as a store of schema *version* keeps it.

    Raises
    ------
    ValueError
        If the blob has the wrong size or fails its checksum (its soundness, finite and
        of unit length, is `sound_rows`'s to check).
    """
    if len(raw) == _BLOB_BYTES:
        body = raw[:-4]
        if zlib.crc32(body).to_bytes(4, "little") != raw[-4:]:
            raise ValueError("fails its checksum")
    elif len(raw) == EMBEDDING_DIM * 4 and version < 3:
        body = raw  # schema 2 (a store opened read-only, not upgraded; an old backup)
    else:
        raise ValueError(f"{len(raw)} bytes, not {_BLOB_BYTES}")
    return np.frombuffer(body, dtype="<f4")


def _with_crc(raw: bytes) -> bytes:
    """512 float32 bytes followed by their CRC-32 (the stored form, schema 3+)."""
    return raw + zlib.crc32(raw).to_bytes(4, "little")


# Steps from version N-1 to N; the store upgrades itself one step at a time.
_MIGRATIONS: dict[int, Any] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _schema_v3}


def migrate(con: sqlite3.Connection, step: int) -> None:
    """Run schema step *step* (`_MIGRATIONS`) on *con*, one statement at a time.

    The store's own upgrade, and restore's reference schema (a backup must hold exactly
    what these steps create).
    """
    migration = _MIGRATIONS[step]
    if callable(migration):
        migration(con)
    else:
        for statement in migration.split(";"):
            if statement.strip():
                con.execute(statement)


#: What to do about a damaged face (`DamagedEmbedding`).
DAMAGED_ADVICE = ("remove the person and enroll them again, or restore a backup "
                  "('facerec restore --replace BACKUP')")


class DamagedEmbedding(StoreError):
    """A stored embedding fails its checks (size, checksum, finite, unit length)."""

    def __init__(self, label: str, face_id: int, reason: str) -> None:
        super().__init__(f"the face store {label} holds a damaged embedding (face {face_id}: {reason})")
        self.face_id = face_id
        self.reason = reason


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
    a vector file (`app.pipeline.storage.vectorfile`), the rest as arrays.
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

    writer: Any  # app.pipeline.storage.vectorfile.VectorWriter, finished (not yet installed)
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

    def _unvec(self, value: Any, face_id: int, *, check: bool = True) -> np.ndarray:
        """An embedding as read from a row; raises `DamagedEmbedding` if it is not sound.

        With *check* False only its form is checked (size, checksum), not its values:
        the caller checks many at once (`_decode`).
        """
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
        rows = self._read("SELECT value FROM meta WHERE key = 'generation'")
        return self._meta_int(rows[0][0] if rows else None, "generation")

    def _meta_int(self, value: object, key: str) -> int:
        """A number from the meta table; a missing or garbled one is a damaged store."""
        try:
            return int(str(value)) if value is not None else int("missing")
        except ValueError:
            raise StoreError(
                f"the face store {self.label} is damaged: its {key!r} record is "
                f"{'missing' if value is None else 'garbled'}; restore a backup "
                "('facerec restore --replace BACKUP') or move the store away to start a new one"
            ) from None

    def _con_generation(self, con: Any) -> int:
        row = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return self._meta_int(row[0] if row else None, "generation")

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
            gen = self._con_generation(con)
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
            gen = self._meta_int(meta.get("generation"), "generation")
            since = self._meta_int(meta.get("history_from", 0), "history_from")
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
            gen = self._meta_int(meta.get("generation"), "generation")
            since = self._meta_int(meta.get("history_from", 0), "history_from")
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
        from app.pipeline.storage.vectorfile import VectorWriter

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
        rows = con.execute("SELECT id, person_id, embedding, source, created, embedder FROM faces "
                           "WHERE changed > ? ORDER BY id", (after,)).fetchall()
        keep, vecs = self._decode([(r[0], r[1], r[2]) for r in rows])
        return [(int(rows[k][0]), int(rows[k][1]), vecs[j], rows[k][3], float(rows[k][4]), rows[k][5])
                for j, k in enumerate(keep)]

    def _gallery(self, rows: list[tuple], names: dict[int, str], gen: int) -> Gallery:  # type: ignore[type-arg]
        keep, emb = self._decode(rows, names)
        face_ids = np.fromiter((rows[k][0] for k in keep), dtype=np.int64, count=len(keep))
        person_ids = np.fromiter((rows[k][1] for k in keep), dtype=np.int64, count=len(keep))
        return Gallery(face_ids, person_ids, emb, names, gen)

    def _decode(self, rows: Sequence[tuple], names: dict[int, str] | None = None  # type: ignore[type-arg]
                ) -> tuple[list[int], np.ndarray]:
        """The sound embeddings of (face id, person id, stored embedding) rows.

        Returns the positions of the rows kept and their vectors. A damaged embedding
        (wrong size, failed checksum, not finite, not of unit length) is quarantined:
        never searched or copied, and a warning names its person, so one flipped bit
        cannot make a person match everyone while their other faces still count.
        """
        emb = np.empty((len(rows), EMBEDDING_DIM), dtype=np.float32)
        keep: list[int] = []
        bad: list[tuple[int, int, str]] = []
        for k, r in enumerate(rows):
            try:
                emb[len(keep)] = self._unvec(r[2], int(r[0]), check=False)
            except DamagedEmbedding as exc:
                bad.append((int(r[0]), int(r[1]), exc.reason))
                continue
            keep.append(k)
        emb = emb[:len(keep)]
        sound = sound_rows(emb)  # the values: one pass over all rows
        if not sound.all():
            for k in np.flatnonzero(~sound).tolist():
                r = rows[keep[k]]
                bad.append((int(r[0]), int(r[1]), self._sound_reason(emb[k]) or "not sound"))
            keep = [k for k, ok in zip(keep, sound.tolist()) if ok]
            emb = emb[sound]
        if bad:
            self._warn_damaged(sorted(bad), names)
        return keep, emb

    def _warn_damaged(self, bad: Sequence[tuple[int, int, str]], names: dict[int, str] | None) -> None:
        by_person: dict[int, list[tuple[int, str]]] = {}
        for fid, pid, why in bad:
            by_person.setdefault(pid, []).append((fid, why))
        for pid, faces in by_person.items():
            name = (names or {}).get(pid)
            if name is None:
                found = self.person_by_id(pid)
                name = found.name if found is not None else f"person {pid}"
            log.warning("face store %s: %d damaged face(s) of %r quarantined, not used for "
                        "recognition (face %s); %s", self.label, len(faces), name,
                        ", ".join(f"{f}: {w}" for f, w in faces), DAMAGED_ADVICE)

    def damaged_faces(self) -> list[tuple[int, int, str]]:
        """(face id, person id, what is wrong) of every stored embedding that fails its checks."""
        out = []
        for fid, pid, emb in self._read("SELECT id, person_id, embedding FROM faces ORDER BY id"):
            if self._stored_elsewhere(emb):
                continue
            try:
                self._unvec(emb, int(fid))
            except DamagedEmbedding as exc:
                out.append((int(fid), int(pid), exc.reason))
        return out

    @staticmethod
    def _stored_elsewhere(value: Any) -> bool:
        """Whether a row's vector lives outside the row (a mirror's vector file)."""
        return False

    def _malformed(self, face_id: int, reason: str = "malformed") -> DamagedEmbedding:
        return DamagedEmbedding(self.label, face_id, reason)

    @staticmethod
    def _sound_reason(v: np.ndarray) -> str | None:
        """What is wrong with *v* as a stored embedding (a finite unit vector), or None."""
        if not np.all(np.isfinite(v)):
            return "not finite"
        norm = float(np.sqrt(np.dot(v.astype(np.float64), v.astype(np.float64))))
        return None if abs(norm - 1.0) <= UNIT_TOLERANCE else f"length {norm:.3g}, not 1"

    def _sound(self, v: np.ndarray, face_id: int) -> np.ndarray:
        """*v* if it is a finite unit vector (as every stored embedding is); else raise."""
        reason = self._sound_reason(v)
        if reason is not None:
            raise self._malformed(face_id, reason)
        return v

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
        """Add faces for several people in a single transaction (a folder import).

        Returns the ids of the faces added, by the name of the person they were added
        to as stored: two folders whose names are the same person (they differ only in
        case) count once.
        """
        out: dict[str, list[int]] = {}
        prepared = [(normalize_name(n), [(f, self._vec(unit_embedding(f.embedding))) for f in fs])
                    for n, fs in batches if fs]
        self._check_enroll()
        with self._write() as (con, gen):
            for clean, faces in prepared:
                row = con.execute("SELECT id, name FROM people WHERE key = ?",
                                  (name_key(clean),)).fetchone()
                pid = int(row[0]) if row else self._new_person(con, clean, gen)
                out.setdefault(row[1] if row else clean, []).extend(
                    self._insert_faces(con, pid, faces, gen))
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
            gen = self._con_generation(con)
            people = [(int(i), n, float(c)) for i, n, c in con.execute(
                "SELECT id, name, created FROM people ORDER BY id").fetchall()]
            rows = con.execute(
                "SELECT id, person_id, embedding, thumbnail, source, created, embedder FROM faces "
                "ORDER BY id").fetchall()
            keep, vecs = self._decode(rows)
            faces = [(int(i), int(p), vecs[j], bytes(t) if t is not None else None, s, float(c), b)
                     for j, (i, p, _, t, s, c, b) in enumerate(rows[k] for k in keep)]
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
            rows = con.execute(f"SELECT id, person_id, embedding FROM faces WHERE person_id IN "
                               f"({','.join('?' * len(chunk))})", chunk).fetchall()
            keep, vecs = self._decode(rows)
            for j, k in enumerate(keep):
                out.setdefault(int(rows[k][1]), set()).add(embedding_digest(vecs[j]))
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
        try:
            if not self.path.exists():
                self._create()
            elif self.path.is_file() and self.path.stat().st_size == 0:
                # SQLite would take a 0-byte file for a new database and fill it: a store
                # truncated by a crash or a full disk would silently become an empty one.
                raise StoreError(
                    f"the face store {self.path} is empty (0 bytes): it was damaged, not created "
                    "by facerec; restore a backup ('facerec restore --replace BACKUP') or move it "
                    "away to start a new store")
            self.read_only = not writable(self.path)
            if self.read_only:
                con = self._open_read_only()
            else:
                con = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                    check_same_thread=False,
                )
                con.execute("PRAGMA foreign_keys = ON")
                con.execute("PRAGMA secure_delete = ON")
                self._check_ours(con)
                self._enable_wal(con)
                con.execute("PRAGMA synchronous = FULL")
                self._migrate(con)
            self._version = int(con.execute("PRAGMA user_version").fetchone()[0])
            self._check_ours(con)
            self._meta_int((con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                            or (None,))[0], "generation")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot open the face store {self.path}: {exc.strerror or exc}") from None
        return con

    def _create(self) -> None:
        """Create a new store atomically: built in a temp file, then linked into place.

        A store therefore never exists half made (a 0-byte file is damage, never "new"),
        and of two processes creating it at once, the first link wins and the other
        opens that one.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}-", suffix=".new", dir=self.path.parent)
        os.close(fd)  # mkstemp makes it owner-only (0600)
        tmp = Path(name)
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode = WAL")
                self._migrate(con)
            finally:
                con.close()  # checkpoints and removes its WAL
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                log.debug("face store %s was created meanwhile by another process", self.path)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                if not self.path.exists():  # a file system without hard links
                    os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)

    def _open_read_only(self) -> sqlite3.Connection:
        """Open a store in a folder (or a file) we may not write: read it, change nothing.

        See `read_only_uri`.
        """
        con = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                              isolation_level=None, check_same_thread=False)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the face store {self.path} was written by a newer facerec "
                             f"(schema {version} > {SCHEMA_VERSION}); upgrade facerec")
        if version < 2:
            raise StoreError(f"the face store {self.path} needs an upgrade, and its folder is "
                             "read-only: open it once where it can be written")
        log.info("face store %s is read-only here: recognising only", self.path)
        return con

    def _check_ours(self, con: sqlite3.Connection) -> None:
        """Refuse a SQLite file of another application (never add our tables beside its own)."""
        tables = {r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        version = con.execute("PRAGMA user_version").fetchone()[0]
        ours = {"people", "faces", "meta"}
        if (tables and version == 0) or (version and not ours <= tables):
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise StoreError(f"{self.path} is not a facerec face store (its tables: {shown}); "
                             "choose another data folder (--data-dir) or move that file away")

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
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or "disk is full" in text or (
                (code == sqlite3.SQLITE_IOERR or "disk I/O error" in text)
                and disk_nearly_full(self.path.parent)):
            # SQLite reports a write that found no space as SQLITE_FULL, but when the
            # journal or WAL cannot grow it is often a bare "disk I/O error".
            return (f"the disk holding the face store {self.path} is full: free some space "
                    "and try again (the failed change was not saved)")
        if code == sqlite3.SQLITE_READONLY or "readonly" in text:
            return (f"the face store {self.path} is read-only here (its folder or file cannot "
                    "be written): people can be recognised but not changed")
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
                migrate(con, step)
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
            gen = self._con_generation(con) + 1
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
        return _with_crc(np.asarray(unit, "<f4").tobytes())

    def _unvec(self, value: Any, face_id: int, *, check: bool = True) -> np.ndarray:
        try:
            v = stored_embedding(bytes(value), getattr(self, "_version", SCHEMA_VERSION))
        except ValueError as exc:
            raise self._malformed(face_id, str(exc)) from None
        return self._sound(v, face_id) if check else v

    @staticmethod
    def _stored_elsewhere(value: Any) -> bool:
        return not value  # an empty embedding: in a mirror's vector file

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

    # -- a local mirror of a shared store (see app.pipeline.storage.shared) -------------
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

    # -- the vector file of a mirror (app.pipeline.storage.vectorfile) ------------------------
    def _vector_file(self, name: str | None, *, writable: bool = False) -> Any:
        """The mirror's vector file called *name* (None if it has none)."""
        from app.pipeline.storage.vectorfile import VectorFile

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
        from app.pipeline.storage.vectorfile import remove_unused

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
        full = [k for k, r in enumerate(rows) if r[2]]
        keep, vecs = self._decode([rows[k] for k in full], names)
        rows = [rows[full[k]] for k in keep] + [rows[k] for k in empty]
        n = len(rows)
        face_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        person_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        emb = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        emb[:len(keep)] = vecs
        where = np.arange(len(keep), n, dtype=np.int64)
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
        order = np.argsort(face_ids, kind="stable")  # the index needs ids in order
        return Gallery(face_ids[order], person_ids[order], emb[order], names, gen)

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
            con.executemany(upsert, ((i, p, self._vec(e), s, c, gen, b)
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


def sound_rows(vecs: np.ndarray) -> np.ndarray:
    """Which rows of *vecs* are finite unit vectors (as every stored embedding is)."""
    v = np.asarray(vecs, np.float32).reshape(len(vecs), EMBEDDING_DIM)
    with np.errstate(invalid="ignore", over="ignore"):
        # A NaN or infinity anywhere makes the sum of squares NaN or infinite: no copy
        # of the whole matrix is needed (float32 sums are exact enough for 1e-3).
        squares = np.einsum("ij,ij->i", v, v)
        ok: np.ndarray = np.isfinite(squares) & (np.abs(np.sqrt(squares) - 1) <= UNIT_TOLERANCE)
    return ok


def read_only_uri(path: Path) -> str:
    """A URI that opens the SQLite store at *path* read-only, even in a read-only folder.

    SQLite cannot open a WAL database read-only unless its ``-shm`` and ``-wal`` files
    exist or can be created. In a folder we cannot write, where they do not exist, no
    process has the store open (a writer keeps them while it does), so it is opened as
    immutable: SQLite then needs neither. Where the folder is writable, never: a writer
    could start meanwhile.
    """
    path = Path(path)
    uri = path.absolute().as_uri() + "?mode=ro"
    live = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    return uri if live or os.access(path.parent, os.W_OK) else uri + "&immutable=1"


def writable(path: Path) -> bool:
    """Whether this process may write the store at *path* (its folder and the file)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def disk_nearly_full(folder: Path) -> bool:
    """Whether the file system holding *folder* has less than 1 MB free."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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
    from app.pipeline.storage.backup import remove_stale_temps

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
        from app.pipeline.storage.shared import SharedStore

        return SharedStore(text, cache_dir, background=background)
    from app.pipeline.storage.pgstore import PostgresStore

    return PostgresStore(text)
