"""The face store in PostgreSQL with pgvector: one gallery shared by many workstations.

`PostgresStore` offers the `Store` API with the same semantics as the SQLite store
(the SQL is shared; the conformance tests run against both): transactions, the
generation counter with per-row stamps and tombstones, names unique case-insensitively,
ids never reused, the recognition log with writer-made ids, schema migrations with a
version. On top of it:

* Every change to the gallery sends ``NOTIFY facerec_gallery, '<generation>'`` on commit,
  so workstations learn of it at once (`app.pipeline.storage.shared`).
* Embeddings are ``vector(512)`` with an HNSW index (``vector_cosine_ops``), so a
  gallery too large for a workstation's memory can be searched in the database with the
  same per-person rule as the local index (`PostgresStore.match`).
* Two roles (`ROLES`): ``facerec_recognizer`` reads the gallery and appends to the log;
  ``facerec_enroller`` may also change people. A recognising workstation that tries to
  enroll gets `StoreReadOnlyError`.

Secure removal, honestly: PostgreSQL never overwrites a row in place (MVCC). A DELETE
marks the row dead; facerec then runs ``VACUUM`` on the tables it deleted from (when its
role owns them or holds ``MAINTAIN``, PostgreSQL 17+), which drops the index entries and
makes the space reusable. The bytes can remain in the data files until that space is
reused, in WAL segments until they are recycled, and in replicas, base backups and WAL
archives. Overwriting a row before deleting it would not help: an UPDATE writes a new row
version and leaves the old one dead, exactly as a DELETE does. Keep the database on an
encrypted volume and rotate its backups if removal must reach the disk.
"""

from __future__ import annotations

import functools
import logging
import re
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from app.pipeline.errors import StoreError
from app.pipeline.recognition.align import EMBEDDING_VERSION
from app.pipeline.recognition.index import (
    CANDIDATES,
    MEAN_FACE_WEIGHT,
    NO_MATCH,
    PEOPLE_PER_QUERY,
    Match,
    faces_per_decision,
)
from app.pipeline.storage.store import (
    SCHEMA_VERSION,
    UNIT_TOLERANCE,
    BulkFaces,
    GalleryDump,
    Store,
    sound_rows,
    unit_embedding,
)
from app.pipeline.types import EMBEDDING_DIM, Gallery, Sighting, name_key

log = logging.getLogger(__name__)

#: Channel of the change notifications; the payload is the new generation.
CHANNEL = "facerec_gallery"
#: The two group roles (NOLOGIN): grant one to each workstation's login role.
RECOGNIZER_ROLE, ENROLLER_ROLE = "facerec_recognizer", "facerec_enroller"
ROLES = (RECOGNIZER_ROLE, ENROLLER_ROLE)
#: pgvector HNSW build parameters. m 32 (pgvector's default is 16): at 1M synthetic faces
#: it agrees with the exact rule on 0.99 of probes at ef_search 100 where m 16 gives 0.97,
#: and on all 500 at ef_search 250 (m 16 needs 700) for a build 1.7 times as long.
PG_HNSW_M, PG_HNSW_EF_CONSTRUCTION = 32, 64
#: The search breadth for up to 100,000 faces (`pg_ef_search` widens it beyond).
PG_EF_SEARCH = 100


def pg_ef_search(n_faces: int) -> int:
    """hnsw.ef_search for a gallery of *n_faces*: `PG_EF_SEARCH`, wider as the graph grows.

    Measured (BENCHMARKS.md, "Shared gallery"; m 32, halfvec): 100 agrees with the exact
    per-person rule on every probe at 100,000 faces; at 1,000,000, 200 on 0.998 and 250 on
    all 500. The breadth grows as the gallery's 0.4th power (250 at 1M, 630 at 10M), up to
    pgvector's maximum of 1000.
    """
    if n_faces <= 100_000:
        return PG_EF_SEARCH
    return int(min(1000, round(PG_EF_SEARCH * (n_faces / 100_000) ** 0.4 / 10) * 10))
#: What the HNSW index is built on: the vectors in half precision (``halfvec``, half the
#: memory and reads of ``vector``, the same answers in the measured galleries), the full
#: ``vector``, or their sign bits (``bq``: binary quantisation, candidates re-ranked
#: exactly). The stored embeddings are float32 whichever is chosen, and the per-person
#: scores are computed on them. See BENCHMARKS.md, "Shared gallery".
INDEX_KINDS = ("halfvec", "vector", "bq")
PG_INDEX_KIND = "halfvec"
#: Binary-quantised candidates re-ranked exactly per query (``bq`` only).
BQ_RERANK = 400
_INDEX_EXPR = {
    "vector": ("embedding", "vector_cosine_ops", "embedding <=> %(q)s"),
    "halfvec": (f"(embedding::halfvec({EMBEDDING_DIM}))", "halfvec_cosine_ops",
                f"embedding::halfvec({EMBEDDING_DIM}) <=> %(q)s::halfvec({EMBEDDING_DIM})"),
    "bq": (f"(binary_quantize(embedding)::bit({EMBEDDING_DIM}))", "bit_hamming_ops",
           f"binary_quantize(embedding)::bit({EMBEDDING_DIM}) <~> "
           f"binary_quantize(%(q)s)::bit({EMBEDDING_DIM})"),
}


def index_sql(kind: str = PG_INDEX_KIND, m: int = PG_HNSW_M,
              ef_construction: int = PG_HNSW_EF_CONSTRUCTION) -> str:
    """``CREATE INDEX faces_embedding ...`` for an index of *kind*."""
    column, ops, _ = _INDEX_EXPR[kind]
    return (f"CREATE INDEX faces_embedding ON faces USING hnsw ({column} {ops}) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")
#: After a removal, VACUUM runs at once only up to this many faces (its index pass grows
#: with the gallery); above it autovacuum reclaims the space.
VACUUM_AFTER_REMOVE_LIMIT = 200_000
_ADVISORY_KEY = 0x66616365  # "face": serialises schema upgrades between processes

# Version 2, the same content as the SQLite schema 2 (the versions move together).
_PG_SCHEMA_V2 = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta(key, value) VALUES ('generation', '0'), ('history_from', '0'),
    ('store_id', gen_random_uuid()::text);
CREATE TABLE people (
    id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,  -- never reused
    name    TEXT NOT NULL,
    key     TEXT COLLATE "C" NOT NULL UNIQUE,  -- name_key(name); "C": the order SQLite gives
    created DOUBLE PRECISION NOT NULL,
    changed BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX people_changed ON people(changed);
CREATE TABLE faces (
    id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,  -- never reused
    person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding vector({EMBEDDING_DIM}) NOT NULL,
    thumbnail BYTEA,
    source    TEXT NOT NULL DEFAULT '',
    created   DOUBLE PRECISION NOT NULL,
    changed   BIGINT NOT NULL DEFAULT 0,
    embedder  TEXT NOT NULL DEFAULT ''
);
-- Inline, not TOASTed out of line: every search and sync reads the vector.
ALTER TABLE faces ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX faces_person ON faces(person_id);
CREATE INDEX faces_changed ON faces(changed);
{index_sql()};
CREATE TABLE removed (
    kind       TEXT NOT NULL,
    id         BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX removed_generation ON removed(generation);
CREATE TABLE sightings (
    id         TEXT COLLATE "C" PRIMARY KEY,
    person_id  BIGINT REFERENCES people(id) ON DELETE CASCADE,
    started    DOUBLE PRECISION NOT NULL,
    last_seen  DOUBLE PRECISION NOT NULL,
    frames     INTEGER NOT NULL,
    similarity DOUBLE PRECISION NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    track      BIGINT,
    station    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sightings_started ON sightings(started);
CREATE INDEX sightings_person ON sightings(person_id);
"""
# Version 3: name keys that keep "ß" apart from "SS" (`name_key`, NFC then lower case;
# names equal under it were equal under the old case folding, so keys stay unique).
# The SQLite store's version 3 also checksums its embeddings; pgvector's own ``vector``
# type holds them here, and they are checked for finite unit length when read.
_PG_SCHEMA_V3 = "rekey people"

_PG_MIGRATIONS = {2: _PG_SCHEMA_V2, 3: _PG_SCHEMA_V3}

# What each role may do (re-run after every migration: new tables need their grants).
_GRANTS = f"""
GRANT SELECT ON meta, people, faces, removed, sightings TO {RECOGNIZER_ROLE};
GRANT INSERT, UPDATE ON sightings TO {RECOGNIZER_ROLE};
GRANT {RECOGNIZER_ROLE} TO {ENROLLER_ROLE};
GRANT UPDATE ON meta TO {ENROLLER_ROLE};
GRANT INSERT, UPDATE, DELETE ON people, faces, removed TO {ENROLLER_ROLE};
GRANT DELETE ON sightings TO {ENROLLER_ROLE};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {ENROLLER_ROLE};
"""
# PostgreSQL 17+: lets the enrolling role VACUUM after a removal.
_GRANT_MAINTAIN = f"GRANT MAINTAIN ON faces, people, sightings TO {ENROLLER_ROLE}"


_UNKNOWN = object()  # an index kind not looked up yet


class StoreOfflineError(StoreError):
    """The shared gallery's database cannot be reached."""


class StoreReadOnlyError(StoreError):
    """The workstation's database role may only recognise, not change people."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    out = re.sub(r"^([A-Za-z][\w+.-]*://[^:@/?#]*:)[^@/?#]*@", r"\1***@", str(url))
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", out)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency of facerec
        raise StoreError("PostgreSQL support needs the psycopg package: pip install "
                         "'psycopg[binary]'") from None
    return psycopg


# -- pgvector's binary format: int16 dim, int16 unused, dim big-endian float32 ------------

class Vector:
    """An embedding passed to PostgreSQL as ``vector`` (binary)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _register_vector(conn: Any) -> None:
    """Teach a connection to send `Vector` and read ``vector`` as float32 arrays."""
    psycopg = _psycopg()
    from psycopg.adapt import Dumper, Loader
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise StoreError("the pgvector extension is not installed in this database "
                         "(CREATE EXTENSION vector, as a superuser)")

    class VectorDumper(Dumper):
        format = psycopg.pq.Format.BINARY
        oid = info.oid

        def dump(self, obj: Vector) -> bytes:
            v = obj.array
            return struct.pack(">HH", v.size, 0) + v.astype(">f4").tobytes()

    class VectorLoader(Loader):
        format = psycopg.pq.Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)

    conn.adapters.register_dumper(Vector, VectorDumper)
    conn.adapters.register_loader(info.oid, VectorLoader)


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """The shared SQL (``?`` parameters) in psycopg's style (``%s``)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Con:
    """The slice of a DB-API connection the shared SQL uses, over a psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> Any:
        return self.conn.execute(_pg_sql(sql), args, binary=True)

    def executemany(self, sql: str, rows: Any) -> Any:
        cur = self.conn.cursor(binary=True)
        cur.executemany(_pg_sql(sql), list(rows))
        return cur


def connect(url: str, *, timeout: float = 5.0, autocommit: bool = True, **options: object) -> Any:
    """A psycopg connection with facerec's settings (timeouts, keepalives, pgvector types).

    Credentials come from the URL, a passfile (``~/.pgpass`` or ``PGPASSFILE``) or a
    service file (``service=`` and ``PGSERVICEFILE``), as libpq reads them.

    Raises
    ------
    StoreOfflineError
        If the server cannot be reached or refuses the login.
    """
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(
            url, autocommit=autocommit, connect_timeout=max(1, round(timeout)),
            application_name="facerec", keepalives=1, keepalives_idle=5, keepalives_interval=2,
            keepalives_count=3, tcp_user_timeout=int(timeout * 1000), **options)
    except psycopg.Error as exc:
        raise StoreOfflineError(f"cannot reach the shared gallery {mask_url(url)}: "
                                f"{_first_line(exc)}") from None
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PostgresStore(Store):
    """The gallery in a PostgreSQL database with pgvector.

    A store belongs to the thread that opened it (one connection).

    Parameters
    ----------
    url : str
        ``postgresql://[user[:password]@][host][:port][/dbname][?param=value...]``.
    timeout : float
        Seconds to wait for the server when connecting.
    migrate : bool
        Create or upgrade the schema if this role may (the database owner).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, migrate: bool = True) -> None:
        self.url = url
        self.label = mask_url(url)
        self._psycopg = _psycopg()
        self._ef: int | None = None
        self._index_kind: object = _UNKNOWN
        self._conn = connect(url, timeout=timeout)
        try:
            self._con = _Con(self._conn)
            self._prepare(migrate)
        except BaseException:
            self._conn.close()
            raise

    # -- connection and schema ----------------------------------------------------
    def _prepare(self, migrate: bool) -> None:
        version = self._schema_version()
        if version != SCHEMA_VERSION:
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(f"the shared gallery {self.label} was written by a newer facerec "
                                 f"(schema {version} > {SCHEMA_VERSION}); upgrade facerec")
            if not migrate:
                raise StoreError(f"the shared gallery {self.label} is not set up for this facerec "
                                 f"(schema {version or 'none'}, {SCHEMA_VERSION} needed)")
            self._migrate()
        with self._errors():
            _register_vector(self._conn)
        self.can_enroll = bool(self._read(
            "SELECT has_table_privilege('people', 'INSERT') AND has_table_privilege('faces', 'DELETE')"
        )[0][0])
        maintain = (" OR has_table_privilege('faces', 'MAINTAIN')"
                    if self._conn.info.server_version >= 170000 else "")
        self._may_vacuum = self.can_enroll and bool(self._read(
            "SELECT pg_has_role(current_user, (SELECT tableowner FROM pg_tables "
            "WHERE tablename = 'faces' AND schemaname = current_schema()), 'USAGE')"
            + maintain)[0][0])

    def _schema_version(self) -> int | None:
        with self._errors():
            if self._conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
                return None
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return int(row[0]) if row else None

    def _migrate(self) -> None:
        """Create or upgrade the schema, one step at a time, under an advisory lock."""
        errors = self._psycopg.errors
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
                # The shared schema starts at version 2 (the SQLite store's schema 2).
                version = self._schema_version() or min(_PG_MIGRATIONS) - 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    log.info("upgrading the shared gallery %s to schema %d", self.label, step)
                    if _PG_MIGRATIONS[step] == _PG_SCHEMA_V3:
                        self._rekey()
                    else:
                        self._conn.execute(_PG_MIGRATIONS[step])
                    self._conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('schema', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(step),))
                self._grant()
        except (errors.InsufficientPrivilege, errors.UndefinedFile, errors.FeatureNotSupported) as exc:
            raise StoreError(
                f"the shared gallery {self.label} is not set up (schema {SCHEMA_VERSION} needed) "
                f"and this role cannot set it up ({_first_line(exc)}); ask its owner to run "
                f"'facerec --store URL setup'") from None
        except self._psycopg.Error as exc:
            raise self._error(exc) from None

    def _rekey(self) -> None:
        """Recompute every person's name key (`name_key`), inside the migration's transaction."""
        rows = self._conn.execute("SELECT id, name FROM people").fetchall()
        with self._conn.cursor() as cur:
            cur.executemany("UPDATE people SET key = %s WHERE id = %s", [(f"\x01{i}", i) for i, _ in rows])
            cur.executemany("UPDATE people SET key = %s WHERE id = %s", [(name_key(n), i) for i, n in rows])

    def _grant(self) -> None:
        """Give the two roles their rights, if the roles exist."""
        have = {r for (r,) in self._conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)).fetchall()}
        if have != set(ROLES):
            return
        self._conn.execute(_GRANTS)
        if self._conn.info.server_version >= 170000:
            self._conn.execute(_GRANT_MAINTAIN)

    def setup(self) -> list[str]:
        """Create the schema (done on open) and the two roles with their rights.

        Needs a role that owns the tables and may create roles. Returns what was done.
        """
        done = []
        errors = self._psycopg.errors
        try:
            with self._conn.transaction():
                for role in ROLES:
                    if not self._conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                              (role,)).fetchone():
                        self._conn.execute(f"CREATE ROLE {role} NOLOGIN")
                        done.append(f"created role {role}")
                self._grant()
        except errors.InsufficientPrivilege as exc:
            raise StoreError(f"cannot create the roles in {self.label}: {_first_line(exc)} "
                             "(run setup as the database owner with CREATEROLE)") from None
        except self._psycopg.Error as exc:
            raise self._error(exc) from None
        done.append(f"granted {RECOGNIZER_ROLE}: read the gallery, append to the log; "
                    f"{ENROLLER_ROLE}: also change people")
        return done

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is not None:
            conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    @property
    def role(self) -> str:
        """The database role this store is connected as."""
        return str(self._read("SELECT current_user")[0][0])

    # -- errors -------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StoreError:
        errors = self._psycopg.errors
        if isinstance(exc, errors.InsufficientPrivilege):
            return StoreReadOnlyError(
                f"this workstation may only recognise: the database role of {self.label} "
                f"may not do this ({_first_line(exc)}); enrolling needs the {ENROLLER_ROLE} role")
        if isinstance(exc, self._psycopg.OperationalError) or self._conn is None or self._conn.closed:
            return StoreOfflineError(f"the shared gallery {self.label} is not reachable "
                                     f"({_first_line(exc)})")
        return StoreError(f"shared gallery {self.label}: {_first_line(exc)}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        if self._conn is None:
            raise StoreError("the shared gallery connection is closed")
        try:
            yield
        except self._psycopg.Error as exc:
            raise self._error(exc) from None

    def _check_enroll(self) -> None:
        if not self.can_enroll:
            raise StoreReadOnlyError(
                f"this workstation may only recognise: the database role of {self.label} cannot "
                f"change people (enrolling needs the {ENROLLER_ROLE} role)")

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[tuple[_Con, int]]:
        """One write transaction; all or nothing.

        A change to the gallery locks the generation row first, so writers take turns
        and their generations are in commit order (a reader's snapshot always holds a
        prefix of them); the notification goes out on commit.
        """
        with self._errors(), self._conn.transaction():
            con = self._con
            if bump:
                gen = int(con.execute("UPDATE meta SET value = (value::bigint + 1)::text "
                                      "WHERE key = 'generation' RETURNING value").fetchone()[0])
            else:
                gen = int(con.execute("SELECT value FROM meta WHERE key = 'generation'")
                          .fetchone()[0]) + 1
            yield con, gen
            if bump:
                con.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(gen)))

    @contextmanager
    def _snapshot(self) -> Iterator[_Con]:
        """A read-only transaction that sees one committed state throughout."""
        with self._errors(), self._conn.transaction():
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield self._con

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._errors():
            rows: list[tuple] = self._con.execute(sql, args).fetchall()  # type: ignore[type-arg]
            return rows

    def _vec(self, unit: np.ndarray) -> object:
        return Vector(unit)

    def _unvec(self, value: Any, face_id: int, *, check: bool = True) -> np.ndarray:
        if not isinstance(value, np.ndarray) or value.size != EMBEDDING_DIM:
            raise self._malformed(face_id, "not a 512-number vector")
        return self._sound(value, face_id) if check else value

    def _quarantine(self, ids: np.ndarray, pids: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """Which of these faces are sound; the others are reported (as `Store._decode` does)."""
        sound = sound_rows(vecs)
        if not sound.all():
            self._warn_damaged([(int(ids[k]), int(pids[k]), "not a unit vector")
                                for k in np.flatnonzero(~sound).tolist()], None)
        return sound

    def damaged_faces(self) -> list[tuple[int, int, str]]:
        """As `Store.damaged_faces`, checked in the database.

        pgvector refuses NaN and infinity, so only the length is checked, without
        reading the vectors out.
        """
        return [(int(i), int(p), "not a unit vector") for i, p in self._read(
            f"SELECT id, person_id FROM faces WHERE abs(vector_norm(embedding) - 1) > {UNIT_TOLERANCE} "
            "ORDER BY id")]

    def _upsert_sightings(self, con: Any, rows: Sequence[Sighting]) -> int:
        cur = con.executemany(
            "INSERT INTO sightings(id, person_id, started, last_seen, frames, similarity, "
            "source, track, station) "
            "SELECT ?, ?::bigint, ?, ?, ?, ?, ?, ?::bigint, ? "
            "WHERE ?::bigint IS NULL OR EXISTS (SELECT 1 FROM people WHERE id = ?::bigint) "
            "ON CONFLICT (id) DO UPDATE SET started = LEAST(sightings.started, excluded.started), "
            "last_seen = GREATEST(sightings.last_seen, excluded.last_seen), "
            "frames = GREATEST(sightings.frames, excluded.frames), "
            "similarity = GREATEST(sightings.similarity, excluded.similarity)",
            [(r.id, r.person_id, float(r.started), float(r.last_seen), int(r.frames),
              float(r.similarity), r.source, r.track, r.station, r.person_id, r.person_id)
             for r in rows])
        return max(0, int(cur.rowcount))

    def _scrub(self) -> None:
        """VACUUM what removals deleted, where this role may and the gallery is not huge."""
        if not self._may_vacuum:
            log.info("removed rows in %s await autovacuum (this role may not VACUUM)", self.label)
            return
        if self.face_count() > VACUUM_AFTER_REMOVE_LIMIT:
            log.info("removed rows in %s await autovacuum (gallery above %d faces)", self.label,
                     VACUUM_AFTER_REMOVE_LIMIT)
            return
        try:
            self._conn.execute("VACUUM faces, people, sightings")
        except self._psycopg.Error as exc:
            log.warning("VACUUM after a removal failed in %s: %s", self.label, _first_line(exc))

    # -- fast reads of many embeddings --------------------------------------------------
    #: Faces per result row when many embeddings are read at once.
    _BATCH = 4096

    def _face_rows(self, con: Any, after: int) -> list[tuple[int, int, np.ndarray, str, float, str]]:
        """Changed faces with embeddings, `_BATCH` to a round trip, by id.

        A whole gallery of a million faces is 2 GB, and per-row Python would dominate a
        fresh workstation's sync: each batch comes back as one row whose vectors are one
        ``bytea`` (pgvector's binary form, back to back) that numpy reads in one go.
        Batches follow the primary key (no sort of the whole table on the server).
        Sources and embedder versions (text, often empty) come in a second query of the
        same snapshot.
        """
        width = 4 + 4 * EMBEDDING_DIM
        text = {int(i): (s, b) for i, s, b in con.execute(
            "SELECT id, source, embedder FROM faces WHERE changed > ? AND "
            "(source <> '' OR embedder <> '')", (after,)).fetchall()}
        out: list[tuple[int, int, np.ndarray, str, float, str]] = []
        last = -1
        while True:
            ids, pids, created, blob = con.execute(
                "SELECT array_agg(id), array_agg(person_id), array_agg(created), "
                "string_agg(vector_send(embedding), ''::bytea) FROM (SELECT id, person_id, created, "
                "embedding FROM faces WHERE changed > ? AND id > ? ORDER BY id LIMIT ?) AS batch",
                (after, last, self._BATCH)).fetchone()
            if not ids:
                break
            raw = np.frombuffer(blob, dtype=np.uint8)
            if raw.size != len(ids) * width:
                raise self._malformed(int(ids[0]))
            block = raw.reshape(len(ids), width)
            if np.any(block[:, :2].copy().view(">u2")[:, 0] != EMBEDDING_DIM):
                raise self._malformed(int(ids[0]))
            vecs = block[:, 4:].copy().view(">f4").astype(np.float32)
            sound = self._quarantine(np.asarray(ids), np.asarray(pids), vecs)
            for k in np.argsort(ids, kind="stable").tolist():  # aggregated in scan order
                if not sound[k]:
                    continue
                i = ids[k]
                src, emb = text.get(i, ("", ""))
                out.append((int(i), int(pids[k]), vecs[k], src, float(created[k]), emb))
            last = max(ids)
            if len(ids) < self._BATCH:
                break
        return out

    #: One face in a binary COPY of (id, person_id, created, embedding): field count, then
    #: each field's length and value (pgvector's binary form: dim, unused, floats).
    _COPY_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("pid", ">i8"),
                          ("l3", ">i4"), ("created", ">f8"), ("l4", ">i4"), ("dim", ">i2"),
                          ("unused", ">i2"), ("vec", ">f4", EMBEDDING_DIM)])
    _COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
    _COPY_HEAD = 19  # the signature (11), flags (4), header extension length (4): zeros
    _COPY_BLOCK = 4 << 20  # bytes parsed at a time

    def _bulk_faces(self, con: Any, folder: Any, stem: str) -> BulkFaces:
        """Every face in one binary ``COPY``, its vector streamed into a new vector file.

        The rows come in the table's order (no sort on the server) and are parsed by
        numpy in blocks of fixed-size records; the vectors go to disk as they arrive, so
        a million faces never sit in memory as Python objects.
        """
        from app.pipeline.storage.vectorfile import VectorWriter

        row = self._COPY_ROW
        text = {int(i): (s, b) for i, s, b in con.execute(
            "SELECT id, source, embedder FROM faces WHERE source <> '' OR embedder <> ''").fetchall()}
        writer = VectorWriter(folder, stem)
        ids, pids, created = [], [], []
        sizes = (np.int16(4), np.int32(8), np.int32(8), np.int32(8), np.int32(4 + 4 * EMBEDDING_DIM))

        def parse(data: bytearray) -> None:
            """Take the whole records at the front of *data* (a record a row)."""
            whole = len(data) // row.itemsize * row.itemsize
            if not whole:
                return
            block = np.frombuffer(bytes(data[:whole]), row)
            del data[:whole]
            # Every field present and of its fixed size (a NULL or another type would
            # shift the records): checked before anything is kept.
            if np.any(block["n"] != sizes[0]) or np.any(block["l1"] != sizes[1]) or \
                    np.any(block["l2"] != sizes[2]) or np.any(block["l3"] != sizes[3]) or \
                    np.any(block["l4"] != sizes[4]) or np.any(block["dim"] != EMBEDDING_DIM):
                raise self._malformed(int(block["id"][0]))
            sound = self._quarantine(block["id"], block["pid"], block["vec"])
            if not sound.all():
                block = block[sound]
            writer.append(block["id"], block["vec"])
            ids.append(block["id"].astype(np.int64))
            pids.append(block["pid"].astype(np.int64))
            created.append(block["created"].astype(np.float64))

        pending = bytearray()
        started = False

        def header() -> None:
            """Drop the header: the signature, no flags, no header extension."""
            nonlocal started
            if bytes(pending[:self._COPY_HEAD]) != self._COPY_SIGNATURE + bytes(8):
                raise StoreError(f"shared gallery {self.label}: the copy of the faces was cut short")
            del pending[:self._COPY_HEAD]
            started = True

        try:
            with self._conn.cursor() as cur, cur.copy(
                    "COPY (SELECT id, person_id, created, embedding FROM faces) TO STDOUT "
                    "(FORMAT BINARY)") as cp:
                # The server sends a message a row: parse them a few megabytes at a time.
                for chunk in cp:
                    pending += chunk
                    if len(pending) >= self._COPY_BLOCK:
                        if not started:
                            header()
                        parse(pending)
            if not started:
                header()
            parse(pending)
            if bytes(pending) != b"\xff\xff":  # the trailer, and nothing else
                raise StoreError(f"shared gallery {self.label}: the copy of the faces was cut short")
            writer.finish()
        except BaseException:
            writer.discard()
            raise

        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        return BulkFaces(writer, cat(ids, np.int64), cat(pids, np.int64), cat(created, np.float64),
                         text)

    def gallery(self) -> Gallery:
        """Every embedding with its face and person ids, read in one consistent snapshot."""
        with self._snapshot() as con:
            gen = self._con_generation(con)
            names = {int(i): n for i, n in con.execute("SELECT id, name FROM people").fetchall()}
            rows = self._face_rows(con, -1)
        n = len(rows)
        emb = np.empty((n, EMBEDDING_DIM), np.float32)
        for k, r in enumerate(rows):
            emb[k] = r[2]
        return Gallery(np.fromiter((r[0] for r in rows), np.int64, n),
                       np.fromiter((r[1] for r in rows), np.int64, n), emb, names, gen)

    # -- restore ------------------------------------------------------------------------
    def replace_with(self, dump: GalleryDump, *, replace: bool = False) -> int:
        """Make this gallery exactly *dump* (ids kept), in one transaction; a restore.

        The generation moves past both the current and the dump's, and no history
        reaches behind it: every workstation's cache reloads in full.

        Raises
        ------
        StoreError
            If people are enrolled here and *replace* is False.
        """
        self._check_enroll()
        with self._write() as (con, gen):
            present = int(con.execute("SELECT count(*) FROM people").fetchone()[0])
            if present and not replace:
                raise StoreError(f"the shared gallery already holds {present} people; pass "
                                 "--replace to overwrite them with the backup")
            con.execute("DELETE FROM sightings")
            con.execute("DELETE FROM faces")
            con.execute("DELETE FROM people")
            con.execute("DELETE FROM removed")
            gen = max(gen, dump.generation + 1)
            con.executemany("INSERT INTO people(id, name, key, created, changed) VALUES (?, ?, ?, ?, ?)",
                            [(i, n, name_key(n), c, gen) for i, n, c in dump.people])
            con.executemany(
                "INSERT INTO faces(id, person_id, embedding, thumbnail, source, created, changed, "
                "embedder) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(i, p, Vector(unit_embedding(e)), t, s, c, gen, b)
                 for i, p, e, t, s, c, b in dump.faces])
            if dump.sightings:
                self._upsert_sightings(con, dump.sightings)
            for table in ("people", "faces"):
                con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"GREATEST((SELECT max(id) FROM {table}), "
                            f"(SELECT last_value FROM pg_sequences WHERE sequencename = "
                            f"'{table}_id_seq' AND schemaname = current_schema()), 1))")
            con.execute("UPDATE meta SET value = ? WHERE key IN ('generation', 'history_from')",
                        (str(gen),))
        self._scrub()
        return len(dump.people)

    # -- search in the database -------------------------------------------------------
    # Only faces of this embedding version take part (`app.pipeline.storage.outdated`). A
    # person's score is `app.pipeline.recognition.index.person_score`: the similarity to their mean
    # face (the sum of similarities over the length of the sum of embeddings) blended
    # with the mean of their best few.
    @staticmethod
    def _match_sql(kind: str) -> str:
        """The per-person rule in SQL, its candidates from an index of *kind*."""
        order = _INDEX_EXPR[kind][2]
        if kind == "bq":
            # Sign bits find BQ_RERANK candidates; their exact distances pick the nearest.
            cand = (f"SELECT person_id, d FROM (SELECT person_id, embedding <=> %(q)s AS d "
                    f"FROM (SELECT person_id, embedding FROM faces WHERE embedder = %(v)s "
                    f"ORDER BY {order} LIMIT {BQ_RERANK}) AS coarse) AS fine "
                    f"ORDER BY d LIMIT {CANDIDATES}")
        else:
            cand = (f"SELECT person_id, embedding <=> %(q)s AS d FROM faces WHERE embedder = %(v)s "
                    f"ORDER BY {order} LIMIT {CANDIDATES}")
        return f"""
        WITH cand AS ({cand}), ppl AS (
            SELECT person_id, min(d) AS best FROM cand GROUP BY person_id
            ORDER BY best LIMIT {PEOPLE_PER_QUERY}
        ), scored AS (
            SELECT f.person_id, f.embedding, 1 - (f.embedding <=> %(q)s) AS sim,
                   row_number() OVER (PARTITION BY f.person_id
                                      ORDER BY f.embedding <=> %(q)s) AS rank,
                   count(*) OVER (PARTITION BY f.person_id) AS n
            FROM faces f JOIN ppl ON ppl.person_id = f.person_id WHERE f.embedder = %(v)s
        )
        SELECT person_id,
               {MEAN_FACE_WEIGHT} * sum(sim) / GREATEST(vector_norm(sum(embedding)), 1e-6)
               + {1 - MEAN_FACE_WEIGHT} * avg(sim) FILTER (
                   WHERE rank <= GREATEST(1, LEAST(5, (n + 3) / 4)))
        FROM scored GROUP BY person_id
    """

    def index_kind(self) -> str | None:
        """What the gallery's HNSW index is built on (`INDEX_KINDS`); None without one."""
        rows = self._read("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                          "AND indexname = 'faces_embedding'")
        if not rows:
            return None
        text = str(rows[0][0])
        return "bq" if "binary_quantize" in text else "halfvec" if "halfvec" in text else "vector"

    def match(self, queries: np.ndarray, names: dict[int, str] | None = None, *,
              ef: int = PG_EF_SEARCH) -> list[Match]:
        """The best person per query, found through pgvector's HNSW index in the database.

        The same per-person rule as `app.pipeline.recognition.index.FaceIndex.match`: the nearest
        `CANDIDATES` faces name up to `PEOPLE_PER_QUERY` people, and each one's score is
        `app.pipeline.recognition.index.person_score` over *all* their faces of this embedding
        version, computed exactly (float32) in the database. The candidates come from
        whichever index the gallery has (`index_kind`, looked up once per connection).
        """
        assert faces_per_decision(9) == 3  # the SQL above encodes this rule
        out = []
        q_all = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        with self._errors():
            if self._ef != ef:
                # A bq index must return BQ_RERANK candidates: ef_search bounds an HNSW scan.
                depth = max(ef, BQ_RERANK) if self._kind() == "bq" else ef
                self._conn.execute(f"SET hnsw.ef_search = {int(depth)}")
                if self._ef is None and self._iterative_scan():
                    # Faces of another embedding version are filtered out after the index
                    # scan: without this, those nearest a face would leave fewer than
                    # CANDIDATES (or none) of the current ones. The order within the
                    # candidates does not matter (they are grouped by person).
                    self._conn.execute("SET hnsw.iterative_scan = relaxed_order")
                self._ef = ef
            sql = self._match_sql(self._kind() or "vector")
            for q in q_all:
                params = {"q": Vector(unit_embedding(q)), "v": EMBEDDING_VERSION}
                rows = self._conn.execute(sql, params, binary=True).fetchall()
                if not rows:
                    out.append(NO_MATCH)
                    continue
                scores = sorted(((float(s), int(p)) for p, s in rows), reverse=True)
                score, pid = scores[0]
                runner = scores[1][0] if len(scores) > 1 else -1.0
                name = names.get(pid) if names is not None else self._name(pid)
                out.append(Match(pid, name, score, runner))
        return out

    def _iterative_scan(self) -> bool:
        """Whether pgvector here can go on scanning its index past filtered rows (0.8+)."""
        rows = self._read("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        try:
            return bool(rows) and tuple(int(x) for x in str(rows[0][0]).split(".")[:2]) >= (0, 8)
        except ValueError:
            return False

    def _kind(self) -> str | None:
        if self._index_kind is _UNKNOWN:
            self._index_kind = self.index_kind()
        return self._index_kind  # type: ignore[return-value]

    def _name(self, person_id: int) -> str | None:
        rows = self._read("SELECT name FROM people WHERE id = ?", (person_id,))
        return str(rows[0][0]) if rows else None

    def rebuild_vector_index(self, *, kind: str = PG_INDEX_KIND, m: int = PG_HNSW_M,
                             ef_construction: int = PG_HNSW_EF_CONSTRUCTION, workers: int = 1,
                             memory: str = "4GB") -> float:
        """Drop and build the HNSW index again (after a bulk load); return seconds taken.

        *memory* (``maintenance_work_mem``) should exceed the graph's size, so that it is
        built in memory; *workers* parallel workers help the build beside this one.
        """
        with self._errors():
            self._conn.execute("DROP INDEX IF EXISTS faces_embedding")
            self._conn.execute(f"SET maintenance_work_mem = '{memory}'")
            self._conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
            t0 = time.perf_counter()
            self._conn.execute(index_sql(kind, m, ef_construction))
            self._index_kind = kind
            self._ef = None
            return time.perf_counter() - t0
