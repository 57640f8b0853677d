"""The recognition log: appearances from per-frame results, kept in the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.pipeline.recognition.appearances import GAP_S, STRANGER_MIN_S, AppearanceLog, prune
from app.pipeline.storage.store import FaceStore, NewFace
from app.pipeline.types import FaceResult, FrameResult


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def frame(*faces: tuple[str | None, int | None, int | None, float]) -> FrameResult:
    """Faces as (name, person id, track, similarity)."""
    return FrameResult(tuple(FaceResult((0, 0, 10, 10), np.zeros((6, 2), np.float32), 0.9, n, s, p, t)
                             for n, p, t, s in faces), (640, 480))


@pytest.fixture
def store(data_dir: Path) -> FaceStore:
    s = FaceStore(data_dir / "faces.db")
    yield s
    s.close()


def person(store: FaceStore, name: str) -> int:
    v = np.random.default_rng(len(name)).standard_normal(512).astype(np.float32)
    pid, _ = store.add_faces(name, [NewFace(v / np.linalg.norm(v))])
    return pid


def make_log(clock: Clock) -> AppearanceLog:
    return AppearanceLog("camera 0", "desk", clock=lambda: 1.7e9 + clock(), monotonic=clock)


def play(log: AppearanceLog, clock: Clock, frames: list[FrameResult], dt: float = 0.1) -> None:
    for f in frames:
        log.update(f)
        clock.t += dt


def test_a_person_in_view_is_one_row_and_a_return_after_a_gap_another(store: FaceStore) -> None:
    ada = person(store, "Ada")
    clock = Clock()
    log = make_log(clock)
    play(log, clock, [frame(("Ada", ada, 1, 0.7 + i / 100)) for i in range(30)])
    log.flush(store)
    (row,) = store.sightings()
    assert (row.name, row.person_id, row.frames) == ("Ada", ada, 30)
    assert (row.source, row.station) == ("camera 0", "desk")
    assert row.similarity == pytest.approx(0.99) and row.last_seen - row.started == pytest.approx(2.9)
    clock.t += GAP_S + 0.5  # out of view long enough: the next sighting is a new appearance
    play(log, clock, [frame(("Ada", ada, 7, 0.8))])
    log.flush(store)
    assert [r.frames for r in store.sightings()] == [1, 30]


def test_strangers_get_one_row_per_track_and_known_faces_none(store: FaceStore) -> None:
    ada = person(store, "Ada")
    clock = Clock()
    log = make_log(clock)
    # Track 1 is Ada, Unknown for its first frames until its vote has a name; tracks 2
    # and 3 are two strangers side by side; track 4 is seen for a moment only.
    frames = [frame((None, None, 1, 0.4), (None, None, 2, 0.3), (None, None, 3, 0.2),
                    (None, None, 4, 0.1) if i < 2 else (None, None, 2, 0.3)) for i in range(3)]
    frames += [frame(("Ada", ada, 1, 0.8), (None, None, 2, 0.35), (None, None, 3, 0.2))
               for _ in range(int(STRANGER_MIN_S / 0.1) + 2)]
    frames += [frame((None, None, 1, 0.4))]  # Ada's track in doubt for a frame
    play(log, clock, frames)
    log.flush(store)
    rows = store.sightings()
    assert sorted((r.track, r.name) for r in rows) == [(1, "Ada"), (2, None), (3, None)]
    assert max(r.similarity for r in rows if r.track == 2) == pytest.approx(0.35)


def test_flushing_is_idempotent_and_only_writes_changes(store: FaceStore) -> None:
    ada = person(store, "Ada")
    clock = Clock()
    log = make_log(clock)
    play(log, clock, [frame(("Ada", ada, 1, 0.7))] * 3)
    assert len(log.flush(store)) == 1
    assert log.flush(store) == []  # nothing changed since
    play(log, clock, [frame(("Ada", ada, 1, 0.7))])
    (again,) = log.flush(store)
    store.record_sightings([again, again])  # written twice: still one row
    assert [r.frames for r in store.sightings()] == [4]


def test_a_removed_persons_rows_go_with_them(store: FaceStore) -> None:
    ada, bob = person(store, "Ada"), person(store, "Bob")
    clock = Clock()
    log = make_log(clock)
    play(log, clock, [frame(("Ada", ada, 1, 0.7), ("Bob", bob, 2, 0.7))] * 3)
    log.flush(store)
    store.remove("Ada")
    play(log, clock, [frame(("Ada", ada, 1, 0.7), ("Bob", bob, 2, 0.7))])
    log.flush(store)  # Ada's open row is written again: the store drops it
    assert [r.name for r in store.sightings()] == ["Bob"]


def test_retention_prunes_old_rows(store: FaceStore) -> None:
    ada = person(store, "Ada")
    clock = Clock()
    log = make_log(clock)
    play(log, clock, [frame(("Ada", ada, 1, 0.7))])
    clock.t += 10 * 86400
    play(log, clock, [frame(("Ada", ada, 1, 0.7))])
    log.flush(store)
    assert len(store.sightings()) == 2
    now = 1.7e9 + clock.t
    assert prune(store, 0, now) == 0  # 0 keeps everything
    assert prune(store, 5, now) == 1
    assert len(store.sightings()) == 1


def test_a_new_source_ends_open_appearances(store: FaceStore) -> None:
    ada = person(store, "Ada")
    clock = Clock()
    log = make_log(clock)
    play(log, clock, [frame(("Ada", ada, 1, 0.7))] * 2)
    log.start("clip.mp4")
    play(log, clock, [frame(("Ada", ada, 1, 0.7))] * 2)
    log.flush(store)
    assert sorted(r.source for r in store.sightings()) == ["camera 0", "clip.mp4"]
