"""The recognition log from a tracked stream: one row per appearance, written to the store.

`SightingLog` turns tracked frame results into `Sighting` rows: one per track of a named
person, and one per track of a stranger that stays unknown for `STRANGER_AFTER_S`
(a face is unknown for a few frames before its name settles; those frames belong to the
person's row, not to a stranger's). Each row gets a UUID when it starts and is written
again, by that id, as it grows: the store upserts by id, so repeated and retried writes
never duplicate it. With a shared gallery the store queues the rows locally and sends
them on (`app.pipeline.shared`).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from app.pipeline.errors import StoreError
from app.pipeline.store import Sighting, Store
from app.pipeline.types import FrameResult

log = logging.getLogger(__name__)

#: A track unknown this long (seconds) is logged as a stranger.
STRANGER_AFTER_S = 1.0
#: Seconds between writes of the open rows to the store.
FLUSH_EVERY_S = 1.0
#: A track not seen for this long (seconds) is forgotten once written.
FORGET_AFTER_S = 30.0


@dataclass
class _Row:
    id: str
    person_id: int | None
    started: float
    last_seen: float
    frames: int
    similarity: float
    track: int
    written: bool = False
    dirty: bool = True


class SightingLog:
    """Appearances of a tracked stream, written to a store's recognition log.

    Parameters
    ----------
    store : Store
        Where rows go (`Store.record_sightings`).
    source : str
        The camera or file, recorded in every row.
    station : str
        This workstation (default: the host name).
    clock : callable
        Wall-clock seconds (injectable for tests).
    """

    def __init__(self, store: Store, source: str = "", station: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.source = source
        self.station = station if station is not None else socket.gethostname()
        self.clock = clock
        self._rows: dict[int, _Row] = {}  # by track: the row the track is adding to
        self._next_flush = 0.0
        self.recorded: set[str] = set()  # ids of every row written

    def update(self, result: FrameResult) -> None:
        """Account for one frame; write the open rows every `FLUSH_EVERY_S` seconds."""
        now = self.clock()
        for face in result.faces:
            if face.track is None:
                continue
            row = self._rows.get(face.track)
            pid = face.person_id
            if row is not None and pid is not None and row.person_id != pid:
                if row.person_id is None and not row.written:
                    row.person_id = pid  # the name settled: these frames were theirs
                else:
                    row = None  # a stranger's row that was logged stays; a new one starts
            if row is None:
                row = _Row(str(uuid.uuid4()), pid, now, now, 0, float(face.similarity), face.track)
                self._rows[face.track] = row
            row.last_seen = now
            row.frames += 1
            row.similarity = max(row.similarity, float(face.similarity))
            row.dirty = True
        if now >= self._next_flush:
            self.flush()
            self._next_flush = now + FLUSH_EVERY_S

    def _due(self, row: _Row, final: bool) -> bool:
        if not row.dirty:
            return False
        if row.person_id is not None:
            return True
        return row.last_seen - row.started >= STRANGER_AFTER_S or (final and row.frames > 1)

    def flush(self, *, final: bool = False) -> int:
        """Write every row that changed since the last write; return how many were sent."""
        due = [r for r in self._rows.values() if self._due(r, final)]
        if due:
            try:
                self.store.record_sightings([
                    Sighting(r.id, r.person_id, r.started, r.last_seen, r.frames, r.similarity,
                             self.source, r.track, self.station) for r in due])
            except StoreError as exc:  # e.g. the file is locked for long: retried next time
                log.warning("recognition log not written yet: %s", exc)
                return 0
            for r in due:
                r.written, r.dirty = True, False
                self.recorded.add(r.id)
        now = self.clock()
        for track in [t for t, r in self._rows.items()
                      if r.written and not r.dirty and now - r.last_seen > FORGET_AFTER_S]:
            del self._rows[track]
        return len(due)
