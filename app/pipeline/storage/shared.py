r"""A workstation's view of a shared gallery: PostgreSQL as the truth, a local mirror as cache.

Design
------
The per-frame path never waits on the network. A `SharedStore` keeps a **mirror** of
the shared gallery in the data directory: an ordinary SQLite store
(``shared/<key>.db``, people and faces with the database's ids and embeddings, no
thumbnails) with its own HNSW index beside it (``shared/<key>.hnsw``). Recognition reads
only the mirror, exactly as it reads a local store, so everything built on the local
store (the index catching up through `changes_since`, another process's changes showing
up) works unchanged.

A background thread (`_Syncer`) keeps the mirror current: it ``LISTEN``\s on the
gallery's channel, so an enrollment anywhere reaches the mirror within milliseconds of
its commit, and it also polls the generation every `POLL_S` seconds (a fallback when
notifications are lost, e.g. behind a transaction-pooling proxy, and the heartbeat that
notices an outage). It applies only the rows changed since the mirror's upstream
generation, or every row when that history is gone (a restored database, another
database at the same URL).

Faults: when the database goes away the mirror keeps serving recognition, also after a
restart while it is still away; `offline_since` says since when. Log rows are written to
the mirror's own ``sightings`` table first (durably, in a local transaction) and sent
on by the thread once the database answers: a row is deleted locally only after the
database committed it, and the database upserts by the row's writer-made id, so a row
sent twice (a crash between the two) is stored once. Changes to people need the
database: while it is away they are refused with `StoreOfflineError`, never half
written.

Galleries above `DB_SEARCH_ABOVE` faces are searched in the database instead
(`RemoteIndex`), with the same per-person rule; while the database is away the mirror's
vectors are scanned exactly instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import StoreError
from app.pipeline.recognition.index import FaceIndex, Match
from app.pipeline.storage.outdated import current_gallery
from app.pipeline.storage.pgstore import (
    CHANNEL,
    PostgresStore,
    StoreOfflineError,
    mask_url,
    pg_ef_search,
)
from app.pipeline.storage.store import GalleryDump, MergeReport, SqliteStore, Store, merge_into
from app.pipeline.types import FaceInfo, Gallery, GalleryDelta, NewFace, Person, Sighting

log = logging.getLogger(__name__)

#: Seconds between polls of the database's generation (and reconnection attempts).
POLL_S = 1.0
#: Seconds to wait for the database when connecting.
CONNECT_TIMEOUT_S = float(os.environ.get("FACEREC_STORE_TIMEOUT", "3"))
#: Above this many faces a workstation searches in the database instead of holding an
#: HNSW graph of its own (measured: see BENCHMARKS.md, "Shared gallery").
DB_SEARCH_ABOVE = int(os.environ.get("FACEREC_DB_SEARCH_ABOVE", "100000"))


def cache_key(url: str) -> str:
    """A file name for a database's mirror: the same for every spelling of its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
        parts.pop("password", None)
        text = repr(sorted(parts.items()))
    except Exception:  # an unparsable URL fails later with a proper message
        text = mask_url(url)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Status:
    """Whether the database answers, shared by the owner thread and the sync thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offline_since: float | None = None
        self.reason = ""

    def offline(self, reason: str) -> None:
        with self._lock:
            if self.offline_since is None:
                self.offline_since = time.time()
                self.reason = reason
                log.warning("shared gallery offline: %s; recognising from the local copy", reason)

    def online(self) -> None:
        with self._lock:
            if self.offline_since is not None:
                log.warning("shared gallery back online after %.0f s", time.time() - self.offline_since)
            self.offline_since = None
            self.reason = ""


def sync_once(pg: PostgresStore, mirror: SqliteStore, lock: threading.Lock) -> bool:
    """Bring the mirror up to the database's generation; True if anything was applied."""
    with lock:
        meta = mirror.mirror_meta()
        up, sid = int(meta.get("upstream", -1)), meta.get("store_id", "")
        head = dict(pg._read("SELECT key, value FROM meta WHERE key IN ('generation', 'store_id')"))
        if sid == head.get("store_id") and up == int(head["generation"]):
            return False
        # A full copy streams its vectors into a vector file beside the mirror.
        delta = pg.rows_since(max(up, 0), sid, bulk=(mirror.path.parent, mirror.path.stem))
        applied = mirror.mirror_apply(delta)
        if applied:
            log.info("mirror of %s: %s %d people, %d faces, %d removals (generation %d)",
                     pg.label, "reloaded" if delta.full else "applied", len(delta.people),
                     len(delta.faces), len(delta.removed), delta.generation)
        return applied


def flush_log(pg: PostgresStore, mirror: SqliteStore, lock: threading.Lock) -> int:
    """Send the log rows queued in the mirror; return how many were sent."""
    with lock:
        rows = mirror.mirror_unsent()
        if not rows:
            return 0
        pg.record_sightings(rows)  # committed (idempotent by id) before they are forgotten here
        mirror.mirror_sent(rows)
        return len(rows)


class _Syncer(threading.Thread):
    """Keeps a mirror current and sends queued log rows, in the background."""

    def __init__(self, owner: SharedStore) -> None:
        super().__init__(name="facerec-gallery-sync", daemon=True)
        self.url = owner.url
        self.mirror_path = owner.mirror_path
        self.status = owner._status
        self.lock = owner._lock
        self.stop = threading.Event()
        self.wake = threading.Event()

    def run(self) -> None:
        mirror = SqliteStore(self.mirror_path)
        pg: PostgresStore | None = None
        next_poll = 0.0
        try:
            while not self.stop.is_set():
                if pg is None:
                    try:
                        pg = PostgresStore(self.url, timeout=CONNECT_TIMEOUT_S, migrate=False)
                        pg._conn.execute(f"LISTEN {CHANNEL}")
                    except Exception as exc:  # StoreError, or psycopg's if the server died meanwhile
                        _drop(pg)
                        pg = None
                        self.status.offline(str(exc))
                        self.stop.wait(POLL_S)
                        continue
                    self.status.online()
                    next_poll = 0.0
                try:
                    if time.monotonic() >= next_poll or self.wake.is_set():
                        self.wake.clear()
                        sync_once(pg, mirror, self.lock)
                        flush_log(pg, mirror, self.lock)
                        self.status.online()  # the heartbeat: it answers
                        next_poll = time.monotonic() + POLL_S
                    for _ in pg._conn.notifies(timeout=0.2, stop_after=1):
                        next_poll = 0.0  # a change was committed: fetch it now
                except StoreOfflineError as exc:
                    _drop(pg)
                    pg = None
                    self.status.offline(str(exc))
                except StoreError as exc:  # e.g. a damaged row: say so, keep serving the mirror
                    log.warning("syncing the shared gallery failed: %s", exc)
                    self.stop.wait(POLL_S)
                except Exception as exc:  # psycopg's own errors while waiting for notifications
                    _drop(pg)
                    pg = None
                    self.status.offline(f"{type(exc).__name__}: {exc}")
        finally:
            _drop(pg)
            mirror.close()


_OFFLINE = object()  # what `SharedStore._on_database` returns when the database is away


def _drop(pg: PostgresStore | None) -> None:
    """Close a connection that may already be dead."""
    if pg is not None:
        try:
            pg.close()
        except Exception:  # a dead connection may fail to close; it is gone either way
            pass


class SharedStore(Store):
    """The `Store` API over a shared PostgreSQL gallery, with a local mirror for recognition.

    Parameters
    ----------
    url : str
        The database URL (credentials in it, a passfile or a service file).
    data_dir : Path
        This workstation's data directory: the mirror lives in ``data_dir/shared``.
    background : bool
        Sync the mirror now and keep it current from a background thread (recognition
        needs it); without it, nothing is synced until `sync` is called.

    Raises
    ------
    StoreError
        If the database cannot be reached and this workstation has no copy of the gallery
        yet, or the schema is not set up.
    """

    def __init__(self, url: str, data_dir: Path, *, background: bool = True) -> None:
        self.url = url
        self.label = mask_url(url)
        key = cache_key(url)
        folder = Path(data_dir) / "shared"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mirror_path = folder / f"{key}.db"
        self.index_path = folder / f"{key}.hnsw"
        self._status = _Status()
        self._lock = threading.Lock()
        self._pg: PostgresStore | None = None
        self._last_attempt = 0.0
        self.left_queued = 0  # log rows still queued when the store was closed
        self.mirror = SqliteStore(self.mirror_path)
        try:
            self._pg = PostgresStore(url, timeout=CONNECT_TIMEOUT_S)
        except StoreOfflineError as exc:
            if not self.mirror.mirror_meta().get("store_id"):
                self.mirror.close()
                raise StoreOfflineError(f"{exc}; this workstation has no copy of that gallery yet, "
                                        "so it cannot start without it") from None
            self._status.offline(str(exc))
        except BaseException:
            self.mirror.close()
            raise
        self._remember_role()
        self._syncer: _Syncer | None = None
        if self._pg is not None and background:
            self.sync()
        if background:
            self._syncer = _Syncer(self)
            self._syncer.start()

    # -- status ---------------------------------------------------------------------
    @property
    def offline_since(self) -> float | None:
        """When the database stopped answering (epoch seconds); None while it answers."""
        return self._status.offline_since

    def _remember_role(self) -> None:
        if self._pg is not None:
            self.can_enroll = self._pg.can_enroll
            self.mirror.record_meta("can_enroll", "1" if self.can_enroll else "0")
        else:
            self.can_enroll = self.mirror.mirror_meta().get("can_enroll", "0") == "1"

    def _online(self, *, now: bool = False) -> PostgresStore | None:
        """The owner thread's connection if the database answers, reconnecting when due.

        While the sync thread knows the database is away this returns None at once (it
        reconnects in the background), so no frame waits on a connection timeout.
        """
        if self._status.offline_since is not None and self._syncer is not None and not now:
            return None
        if self._pg is not None and not self._pg._conn.closed:
            return self._pg
        if not now and self._syncer is not None and time.monotonic() - self._last_attempt < POLL_S:
            return None
        self._last_attempt = time.monotonic()
        try:
            self._pg = PostgresStore(self.url, timeout=CONNECT_TIMEOUT_S, migrate=False)
        except StoreOfflineError as exc:
            self._status.offline(str(exc))
            return None
        self._status.online()
        self._remember_role()
        return self._pg

    def _offline_error(self, what: str) -> StoreOfflineError:
        since = self._status.offline_since
        when = time.strftime("%H:%M:%S", time.localtime(since)) if since else "just now"
        return StoreOfflineError(f"the shared gallery {self.label} is offline since {when}: "
                                 f"{what} waits until it is back (nothing was saved)")

    def _on_database(self, fn: Callable[[PostgresStore], Any], *, now: bool = False) -> Any:
        """``fn(connection)`` if the database answers, else `_OFFLINE`.

        A connection from before a server restart fails once although the database is
        back, so a failure is tried again, once, on a fresh connection.
        """
        pg = self._online(now=now)
        if pg is None:
            return _OFFLINE
        try:
            return fn(pg)
        except StoreOfflineError:
            _drop(pg)
            self._pg = None
        pg = self._online(now=True)
        if pg is None:
            return _OFFLINE
        try:
            return fn(pg)
        except StoreOfflineError as exc:
            _drop(pg)
            self._pg = None
            self._status.offline(str(exc))
            return _OFFLINE

    def _call(self, what: str, fn: Callable[[PostgresStore], Any]) -> Any:
        """Run a change on the database, then bring the mirror up to it."""
        out = self._on_database(fn)
        if out is _OFFLINE:
            raise self._offline_error(what)
        try:
            self.sync()
        except StoreOfflineError:
            pass  # committed; the mirror catches up when the database answers again
        return out

    def _query(self, fn: Callable[[Store], Any]) -> Any:
        """A read: from the database while it answers (thumbnails too), else the mirror."""
        out = self._on_database(fn)
        return fn(self.mirror) if out is _OFFLINE else out

    def sync(self) -> bool:
        """Bring the mirror up to the database now (and send queued log rows)."""
        def both(pg: PostgresStore) -> bool:
            changed = sync_once(pg, self.mirror, self._lock)
            flush_log(pg, self.mirror, self._lock)
            return changed

        out = self._on_database(both)
        if out is _OFFLINE:
            raise self._offline_error("syncing")
        return bool(out)

    def close(self) -> None:
        """Stop syncing, send what the log still holds if the database answers, close."""
        if self.mirror._con is None:
            return
        syncer, self._syncer = getattr(self, "_syncer", None), None
        if syncer is not None:
            syncer.stop.set()
            syncer.join(timeout=CONNECT_TIMEOUT_S + 2)
        if self.mirror.mirror_unsent():
            try:
                sent = self._on_database(lambda pg: flush_log(pg, self.mirror, self._lock), now=True)
                if sent is not _OFFLINE and sent:
                    log.info("sent %d queued log rows to %s", sent, self.label)
            except StoreError as exc:
                log.warning("log rows stay queued in %s: %s", self.mirror_path, exc)
        self.left_queued = left = len(self.mirror.mirror_unsent())
        if left:
            log.warning("%d log rows wait in %s for the shared gallery", left, self.mirror_path)
        _drop(self._pg)
        self._pg = None
        self.mirror.close()

    def __enter__(self) -> SharedStore:
        return self

    @property
    def queued_sightings(self) -> int:
        """Log rows recorded here that the database has not confirmed yet."""
        return len(self.mirror.mirror_unsent())

    # -- what recognition reads: the mirror ------------------------------------------------
    @property
    def generation(self) -> int:
        """The mirror's generation (it moves with every change applied from the database)."""
        return self.mirror.generation

    def gallery(self) -> Gallery:
        """Every embedding, from the mirror."""
        return self.mirror.gallery()

    def changes_since(self, generation: int) -> GalleryDelta | None:
        """What the mirror changed after *generation* (see `Store.changes_since`)."""
        return self.mirror.changes_since(generation)

    # -- management reads: the database while it answers ----------------------------------
    def people(self) -> list[Person]:  # noqa: D102 - as Store
        return list(self._query(lambda s: s.people()))

    def person(self, name: str) -> Person | None:  # noqa: D102 - as Store
        out: Person | None = self._query(lambda s: s.person(name))
        return out

    def person_by_id(self, person_id: int) -> Person | None:  # noqa: D102 - as Store
        out: Person | None = self._query(lambda s: s.person_by_id(person_id))
        return out

    def face_count(self) -> int:  # noqa: D102 - as Store
        return int(self._query(lambda s: s.face_count()))

    def thumbnail(self, person_id: int) -> bytes | None:  # noqa: D102 - as Store
        out: bytes | None = self._query(lambda s: s.thumbnail(person_id))
        return out

    def faces_of(self, person_id: int) -> list[FaceInfo]:  # noqa: D102 - as Store
        return list(self._query(lambda s: s.faces_of(person_id)))

    def face(self, face_id: int) -> FaceInfo | None:  # noqa: D102 - as Store
        out: FaceInfo | None = self._query(lambda s: s.face(face_id))
        return out

    def embedder_counts(self) -> dict[str, int]:  # noqa: D102 - as Store
        return dict(self._query(lambda s: s.embedder_counts()))

    def damaged_faces(self) -> list[tuple[int, int, str]]:  # noqa: D102 - as Store
        return list(self._query(lambda s: s.damaged_faces()))

    def faces_not_made_by(self, embedder: str, changed_after: int = -1) -> list[tuple[int, int]]:
        """As `Store.faces_not_made_by`, from the mirror.

        The recognising side reads the mirror's snapshot and change sets, so it must
        filter them with the mirror's rows.
        """
        return self.mirror.faces_not_made_by(embedder, changed_after)

    # -- changes: the database, then the mirror --------------------------------------------
    def add_faces(self, name: str, faces: Iterable[NewFace], *, create: bool = True,
                  must_be_new: bool = False) -> tuple[int, list[int]]:
        """As `Store.add_faces`, in the shared gallery (refused while it is away)."""
        items = list(faces)
        out: tuple[int, list[int]] = self._call(
            "enrolling", lambda pg: pg.add_faces(name, items, create=create, must_be_new=must_be_new))
        return out

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]
                 ) -> dict[str, list[int]]:
        """As `Store.add_many`, in the shared gallery (refused while it is away)."""
        return dict(self._call("enrolling", lambda pg: pg.add_many(batches)))

    def rename(self, old: str, new: str) -> Person:  # noqa: D102 - as Store
        out: Person = self._call("renaming", lambda pg: pg.rename(old, new))
        return out

    def remove(self, name: str) -> list[int]:  # noqa: D102 - as Store
        return list(self._call("removing people", lambda pg: pg.remove(name)))

    def remove_faces(self, face_ids: Sequence[int]) -> None:  # noqa: D102 - as Store
        self._call("removing faces", lambda pg: pg.remove_faces(face_ids))

    def move_faces(self, face_ids: Sequence[int], to_name: str, *,
                   create: bool = True) -> Person:
        """As `Store.move_faces`, in the shared gallery (refused while it is away)."""
        out: Person = self._call("moving faces",
                                 lambda pg: pg.move_faces(face_ids, to_name, create=create))
        return out

    def merge(self, dump: GalleryDump) -> MergeReport:  # noqa: D102 - as Store
        out: MergeReport = self._call("copying a gallery in", lambda pg: merge_into(pg, dump))
        return out

    def dump(self) -> GalleryDump:  # noqa: D102 - as Store
        out = self._on_database(lambda pg: pg.dump())
        if out is _OFFLINE:
            raise self._offline_error("copying the gallery")
        dump: GalleryDump = out
        return dump

    # -- the recognition log: queued here, sent by the sync thread --------------------------
    def record_sightings(self, rows: Sequence[Sighting]) -> int:
        """Queue log rows in the mirror (durably); the sync thread sends them on."""
        n = self.mirror.record_sightings(rows)
        if self._syncer is not None:
            self._syncer.wake.set()
        return n

    def sightings(self, limit: int = 1000, *, since: float | None = None) -> list[Sighting]:
        """The shared log while the database answers; this workstation's unsent rows if not."""
        def shared(pg: PostgresStore) -> list[Sighting]:
            flush_log(pg, self.mirror, self._lock)
            return pg.sightings(limit, since=since)

        out = self._on_database(shared)
        return self.mirror.sightings(limit, since=since) if out is _OFFLINE else list(out)

    def clear_sightings(self, *, before: float | None = None) -> int:
        """Delete log rows in the shared log (and any still queued here)."""
        n: int = self._call("clearing the log", lambda pg: pg.clear_sightings(before=before))
        return n + self.mirror.clear_sightings(before=before)

    # -- search in the database (galleries above DB_SEARCH_ABOVE) ---------------------------
    def match_in_database(self, queries: np.ndarray, names: dict[int, str],
                          n_faces: int) -> list[Match] | None:
        """The per-person matches from the database's HNSW index; None while it is away.

        The search breadth follows the gallery's size, *n_faces* (`pgstore.pg_ef_search`).
        """
        out = self._on_database(lambda pg: pg.match(queries, names, ef=pg_ef_search(n_faces)))
        return None if out is _OFFLINE else list(out)


class RemoteIndex:
    """The index of a shared gallery too large to hold here: searched in the database.

    It offers what the recognizer uses of `FaceIndex`. Names come from the mirror and
    follow its changes; while the database is away, queries scan the mirror's vectors
    exactly (loaded on first need), so recognition goes on, more slowly.
    """

    def __init__(self, store: SharedStore, threads: int = 1) -> None:
        self.store = store
        self.threads = threads
        self.path: Path | None = None
        self.search_mode = "database"
        self._local: FaceIndex | None = None
        self._load_names()

    def _load_names(self) -> None:
        m = self.store.mirror
        self.generation = m.generation
        self._names = {int(i): str(n) for i, n in m._read("SELECT id, name FROM people")}
        self._n = m.face_count()
        self._people = int(m._read("SELECT count(DISTINCT person_id) FROM faces")[0][0])

    def __len__(self) -> int:
        return self._n

    @property
    def people_count(self) -> int:
        """Number of people with at least one face."""
        return self._people

    def name_of(self, person_id: int | None) -> str | None:
        """The current name of a person, None if unknown or deleted."""
        return self._names.get(person_id) if person_id is not None else None

    def uses_exact(self) -> bool:
        """Whether queries scan every vector (only while the database is away)."""
        return self._local is not None and self.store.offline_since is not None

    def apply(self, delta: GalleryDelta) -> None:
        """Follow the mirror: names, counts, and the offline stand-in if it is loaded."""
        if self._local is not None:
            self._local.apply(delta)
        self._load_names()
        self.generation = delta.generation

    def flush(self) -> None:
        """Nothing is persisted: the database holds the index."""

    def match(self, queries: np.ndarray) -> list[Match]:
        """The best person per query (the per-person rule), in the database if it answers."""
        found = self.store.match_in_database(queries, self._names, self._n)
        if found is not None:
            return found
        if self._local is None:
            log.warning("searching %d faces exactly while the shared gallery is away", self._n)
            self._local = FaceIndex(current_gallery(self.store), None, "exact", self.threads,
                                    graph=False)
        return self._local.match(queries)


def describe_offline(since: float | None) -> str:
    """The status line: "shared gallery offline since 14:02:31" (empty when online)."""
    if since is None:
        return ""
    return f"shared gallery offline since {time.strftime('%H:%M:%S', time.localtime(since))}"
