"""The tile scan on a stream: tiles are scanned where a new face can be, not everywhere."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.recognition.detector import TilePlan
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.recognition.scan import NEAR_RESCAN, RESCAN_AFTER, SWEEP_FRAMES, TileScheduler, frame_cells
from app.pipeline.recognition.tracking import TILES_PER_FRAME, FaceTracker
from app.pipeline.types import Detection
from tests.conftest import DEEPFACE, FR
from tests.pipeline.test_tracking import small_face_scene


def textured(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    return cv2.resize((rng.random((h // 40, w // 40, 3)) * 200 + 30).astype(np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def holds(region: tuple[int, int, int], x: int, y: int, side: int) -> bool:
    rx, ry, rs = region
    return rx <= x and x + side <= rx + rs and ry <= y and y + side <= ry + rs


def test_a_still_picture_is_scanned_once_then_only_by_the_slow_sweep() -> None:
    frame = textured((1280, 720))
    tracker = FaceTracker()
    n_tiles = len(TilePlan(1280, 720).regions)
    counts = [len(tracker.regions(frame)) for _ in range(SWEEP_FRAMES + 20)]
    first = -(-n_tiles // TILES_PER_FRAME)
    assert counts[:first - 1] == [TILES_PER_FRAME] * (first - 1)  # as fast as before
    assert sum(counts[:first]) == n_tiles  # every tile once...
    assert counts[first:SWEEP_FRAMES] == [0] * (SWEEP_FRAMES - first)  # ...then nothing new
    assert counts[SWEEP_FRAMES:] == [1] * 20  # the sweep: one stale tile a frame


def test_where_the_picture_changes_its_tiles_are_scanned_again() -> None:
    still = textured((1280, 720))
    tracker = FaceTracker()
    for _ in range(30):
        tracker.regions(still)
    changed = still.copy()
    changed[400:460, 900:960] = 255  # something 60 px wide appears
    asked = [tracker.regions(changed) for _ in range(RESCAN_AFTER + 10)]
    touched = [r for frame in asked for r in frame]
    # Only tiles that overlap the change, a few a frame, until each was scanned once.
    assert all(r[0] < 960 and 900 < r[0] + r[2] and r[1] < 460 and 400 < r[1] + r[2] for r in touched)
    assert all(0 < len(frame) <= TILES_PER_FRAME for frame in asked[:2])
    assert any(holds(r, 900, 400, 60) for frame in asked[:3] for r in frame)  # one sees it whole
    assert len(set(touched)) == len(touched)
    assert asked[-RESCAN_AFTER:] == [[]] * RESCAN_AFTER  # then it is left alone


def test_a_tracked_face_moving_costs_one_tile_a_frame_at_most() -> None:
    size = (1280, 720)
    base = textured(size)
    face = textured((200, 200), seed=1)

    def frame_with_face(x: int) -> tuple[np.ndarray, Detection]:
        f = base.copy()
        f[300:500, x:x + 200] = face
        return f, Detection((x + 50, 350, 100, 100), np.zeros((6, 2), np.float32), 0.9,
                            (x + 50.0, 350.0, 100.0, 100.0))

    def run(track: bool) -> list[list[tuple[int, int, int]]]:
        scan = TileScheduler(*size)
        f, d = frame_with_face(400)
        for _ in range(20):  # every tile scanned once
            scan.take(frame_cells(f), [d], TILES_PER_FRAME)
        out = []
        # Until just before the sweep (SWEEP_FRAMES after the first scans) could pick a
        # tile far from the face; a tile near it is due again after NEAR_RESCAN in that time.
        assert NEAR_RESCAN + 5 < SWEEP_FRAMES - 20
        for i in range(SWEEP_FRAMES - 20):
            f, d = frame_with_face(400 + round(60 * np.sin(i / 8)))  # to and fro
            out.append(scan.take(frame_cells(f), [d] if track else [], TILES_PER_FRAME))
        return out

    tracked = run(track=True)
    # Its own motion: a tile near it at most once a frame, each again only after NEAR_RESCAN.
    assert all(len(t) <= 1 for t in tracked) and sum(map(len, tracked)) > 0
    scanned = [(i, r) for i, t in enumerate(tracked) for r in t]
    for i, r in scanned:
        assert not [j for j, q in scanned if q == r and 0 < j - i < NEAR_RESCAN]
        assert r[0] < 460 + 225 and 340 - 25 < r[0] + r[2]  # it overlaps where the face moved
    untracked = run(track=False)  # the same motion, nobody tracked: up to 4 tiles a frame
    assert max(map(len, untracked)) == TILES_PER_FRAME


def test_a_scene_cut_rescans_every_tile() -> None:
    tracker = FaceTracker()
    a = textured((1280, 720))
    b = 255 - a  # another scene
    for _ in range(30):
        tracker.regions(a)
        tracker.scene_cut(a)
    tracker.regions(b)  # the cut is noticed after this frame's detection...
    assert tracker.scene_cut(b)
    n_tiles = len(TilePlan(1280, 720).regions)
    after = [tracker.regions(b) for _ in range(-(-n_tiles // TILES_PER_FRAME))]
    assert {r for frame in after for r in frame} == set(TilePlan(1280, 720).regions)  # ...all again


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recognizer:
    r = Recognizer.open(Paths(tmp_path_factory.mktemp("data")), Settings())
    r.enroll("Jolie", [r.prepare_file(DEEPFACE / "img1.jpg").face])
    yield r
    r.close()


def test_a_small_face_walking_in_is_found_soon(rec: Recognizer) -> None:
    # A sitter fills the middle of a 720p frame; a person with a 48 px face walks in from
    # the right. Only tiles find a face that small, and only where the picture changes.
    sitter, _ = small_face_scene(rec, (1280, 720), (300,), [FR / "obama2.jpg"], [(560, 380)])
    walker_frame, _ = small_face_scene(rec, (400, 200), (48,), [DEEPFACE / "img2.jpg"], [(200, 100)])
    walker = walker_frame[52:148, 152:248]  # 96 px square, the face in the middle

    def frame(t: int) -> np.ndarray:
        f = sitter.copy()
        x = 1280 - 96 - 5 * t  # wholly in view from t = 0
        f[150:246, x:x + 96] = walker
        return f

    tracker, whole_only = FaceTracker(), FaceTracker(tiles_per_frame=0)
    for i in range(40):  # the sitter alone: every tile scanned once, then quiet
        rec.process(sitter, i, tracker)
        rec.process(sitter, i, whole_only)
    found_at = None
    for t in range(30):
        names = [f.name for f in rec.process(frame(t), 40 + t, tracker).faces]
        assert len(rec.process(frame(t), 40 + t, whole_only).faces) == 1
        if len(names) == 2:
            found_at = t
            break
    assert found_at is not None and found_at <= RESCAN_AFTER + 3, found_at
    assert "Jolie" in names or None in names
