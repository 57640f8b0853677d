"""The recognition log: who was seen, when and for how long; one row per appearance.

`AppearanceLog` turns per-frame results into rows of the store's log (`Sighting`):

* a **named person** gets one row per appearance: it starts when they are seen and
  ends once they have been out of view for `GAP_S` seconds, so a person standing in
  front of the camera for a minute makes one row, not 1,800;
* a **stranger** gets one row per track (a tracked face is one stranger; two strangers
  in view are two rows). A new track is Unknown for its first frames until its vote
  has a name, so a track is logged as a stranger only once it has stayed unnamed for
  `STRANGER_MIN_S` seconds and `STRANGER_MIN_FRAMES` frames, and never if it was named
  before. Without a tracker (single photos) strangers cannot be told apart and share
  one row per stretch of time, as named people do.

Rows get their id (a UUID) when they start and are written with `flush`, which only
writes rows that changed and can be repeated safely (the store upserts by id). It is
plain Python: the GUI worker and ``facerec watch --log`` use it alike.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.pipeline.storage.store import Store
from app.pipeline.types import FrameResult, Sighting

log = logging.getLogger(__name__)

#: Seconds a person must be out of view before seeing them again is a new appearance.
GAP_S = 2.0
#: A track must stay unnamed this long, and for this many frames, to be logged as a
#: stranger (a new track of a known person is Unknown until its vote has a name).
STRANGER_MIN_S = 1.5
STRANGER_MIN_FRAMES = 3
#: Days of log kept by default (a setting; 0 keeps everything).
DEFAULT_RETENTION_DAYS = 30


@dataclass
class _Appearance:
    row: Sighting
    first_mono: float
    last_mono: float
    logged: bool = True  # strangers: False until they qualify


class AppearanceLog:
    """Per-frame results in, log rows out.

    Parameters
    ----------
    source : str
        The camera or file the frames come from (written with each row).
    station : str
        Which machine saw them; the host name by default.
    gap : float
        Absence (seconds) that ends an appearance.
    clock, monotonic : callable
        Wall clock (the rows' times) and monotonic clock (gaps); injectable for tests.
    """

    def __init__(self, source: str = "", station: str | None = None, gap: float = GAP_S,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.station = station if station is not None else socket.gethostname()
        self.gap = gap
        self.clock = clock
        self.monotonic = monotonic
        self._open: dict[tuple[str, int | None], _Appearance] = {}
        self._named_tracks: set[int] = set()
        self._dirty: set[str] = set()
        self._rows: dict[str, Sighting] = {}

    def start(self, source: str) -> None:
        """A new source: every open appearance ends (pending rows stay to be flushed)."""
        self.source = source
        self._open.clear()
        self._named_tracks.clear()

    def reset(self) -> None:
        """Forget everything, written or not (after the log was cleared)."""
        self._open.clear()
        self._named_tracks.clear()
        self._dirty.clear()
        self._rows.clear()

    def update(self, result: FrameResult) -> bool:
        """Account for one frame; True if a row started (worth showing at once)."""
        now, mono = self.clock(), self.monotonic()
        seen: dict[tuple[str, int | None], tuple[float, int | None, str | None]] = {}
        for face in result.faces:
            if face.person_id is not None:
                key: tuple[str, int | None] = ("person", face.person_id)
                if face.track is not None:
                    self._named_tracks.add(face.track)
            elif face.track is not None:
                if face.track in self._named_tracks:
                    continue  # a known person's face in doubt for a moment
                key = ("track", face.track)
            else:
                key = ("unknown", None)
            prev = seen.get(key)
            if prev is None or face.similarity > prev[0]:
                seen[key] = (float(face.similarity), face.track, face.name)
        started = False
        for key, (sim, track, name) in seen.items():
            app = self._open.get(key)
            if app is not None and mono - app.last_mono <= self.gap:
                r = app.row
                app.row = replace(r, last_seen=now, frames=r.frames + 1,
                                  similarity=max(r.similarity, sim), track=track,
                                  name=name if name is not None else r.name)
                app.last_mono = mono
            else:
                row = Sighting(uuid.uuid4().hex, key[1] if key[0] == "person" else None, now, now,
                               1, sim, self.source, track, self.station, name)
                app = _Appearance(row, mono, mono, logged=key[0] != "track")
                self._open[key] = app
            if not app.logged and (mono - app.first_mono >= STRANGER_MIN_S
                                   and app.row.frames >= STRANGER_MIN_FRAMES):
                app.logged = True
            if app.logged:
                started |= app.row.id not in self._rows
                self._rows[app.row.id] = app.row
                self._dirty.add(app.row.id)
        # Forget appearances that have ended, and stranger rows of tracks named since.
        self._open = {k: a for k, a in self._open.items()
                      if mono - a.last_mono <= self.gap
                      and not (k[0] == "track" and not a.logged and k[1] in self._named_tracks)}
        return started

    @property
    def has_pending(self) -> bool:
        """True if some row started or changed since the last successful `flush`."""
        return bool(self._dirty)

    def pending(self) -> list[Sighting]:
        """Rows started or changed since the last successful `flush`."""
        return [self._rows[i] for i in self._dirty]

    def flush(self, store: Store) -> list[Sighting]:
        """Write the pending rows; return them (they stay pending if the write fails).

        Raises
        ------
        StoreError
            If the store cannot be written (try again later: nothing is lost).
        """
        rows = self.pending()
        if rows:
            store.record_sightings(rows)
            self._dirty.difference_update(r.id for r in rows)
        # Rows of appearances that have ended are final once written.
        live = {a.row.id for a in self._open.values()}
        self._rows = {i: r for i, r in self._rows.items() if i in live or i in self._dirty}
        return rows


def prune(store: Store, days: int, now: float | None = None) -> int:
    """Delete log rows last seen more than *days* ago (0 keeps everything); return how many.

    A recognising workstation of a shared gallery may only append to the log: pruning
    it is left to the enrolling ones.
    """
    if days <= 0 or not store.can_enroll:
        return 0
    before = (time.time() if now is None else now) - days * 86400.0
    n = store.clear_sightings(before=before)
    if n:
        log.info("recognition log: removed %d row(s) older than %d day(s)", n, days)
    return n
