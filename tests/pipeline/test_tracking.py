"""Tracking across frames, identity votes and small faces in large frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.detector import TilePlan
from app.pipeline.imageio import load_image
from app.pipeline.recognizer import Recognizer
from app.pipeline.sources import VideoSource
from app.pipeline.tracking import FaceTracker
from tests.conftest import DEEPFACE, FR


@pytest.fixture
def rec(data_dir: Path) -> Recognizer:
    r = Recognizer.open(Paths(data_dir), Settings())
    r.enroll("Obama", [r.enroll_file(FR / "obama.jpg").face])
    r.enroll("Biden", [r.enroll_file(FR / "biden.jpg").face])
    yield r
    r.close()


def frames_of(video: Path) -> list[np.ndarray]:
    with VideoSource(str(video)) as src:
        out = []
        while (f := src.read()) is not None:
            out.append(f)
    return out


def test_track_ids_are_stable_and_change_with_the_person(rec: Recognizer, face_video: Path) -> None:
    tracker = FaceTracker()
    results = [rec.process(f, i, tracker) for i, f in enumerate(frames_of(face_video))]
    assert all(len(r.faces) == 1 for r in results)
    ids = [r.faces[0].track for r in results]
    names = [r.faces[0].name for r in results]
    # One track per person segment, even though Biden appears where Obama was.
    assert len(set(ids[:24])) == 1 and len(set(ids[24:48])) == 1 and len(set(ids[48:])) == 1
    assert len({ids[0], ids[24], ids[48]}) == 3
    assert names[:24] == ["Obama"] * 24
    assert names[24:48] == ["Biden"] * 24
    assert names[48:] == [None] * 24
    # Faces are not re-embedded on every frame.
    embedded = sum(r.embedded for r in results)
    assert embedded < 0.5 * len(results)


def test_one_bad_frame_cannot_rename_a_track(rec: Recognizer) -> None:
    """A stranger's face pasted over Obama for one frame does not change the name."""
    from tests.video import fit

    obama = fit(load_image(FR / "obama3.jpg"), (640, 480))
    stranger = fit(load_image(DEEPFACE / "img3.jpg"), (640, 480))
    tracker = FaceTracker()
    d = rec.detector.detect(obama)[0]
    x, y, w, h = d.box
    sd = rec.detector.detect(stranger)[0]
    sx, sy, sw, sh = sd.box
    impostor = obama.copy()  # stranger's face in Obama's box: same place, same size
    impostor[y:y + h, x:x + w] = cv2.resize(stranger[sy:sy + sh, sx:sx + sw], (w, h))
    names = []
    for i in range(30):
        frame = impostor if i == 12 else obama
        res = rec.process(frame, i, tracker)
        names.extend(f.name for f in res.faces)
    # The odd frame shows no name (the track is in doubt); it names nobody else, and the
    # track keeps its name from the next frame on.
    assert names[:12] == ["Obama"] * 12 and names[13:] == ["Obama"] * 17
    assert names[12] is None


def small_face_scene(rec: Recognizer, size: tuple[int, int] = (1920, 1080),
                     heights: tuple[int, ...] = (40, 48, 60, 80)
                     ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A large grey frame with four small faces (real photos, scaled) at known spots."""
    w, h = size
    frame = np.full((h, w, 3), 105, np.uint8)
    photos = [FR / "obama.jpg", FR / "biden.jpg", DEEPFACE / "img1.jpg", DEEPFACE / "img13.jpg"]
    centres = []
    for i, (photo, face_h) in enumerate(zip(photos, heights)):
        rgb = load_image(photo)
        x, y, bw, bh = rec.detector.detect(rgb)[0].box
        cx, cy = x + bw // 2, y + bh // 2
        head = rgb[max(0, cy - bh):cy + bh, max(0, cx - bw):cx + bw]  # 2x the face box
        head = cv2.resize(head, None, fx=face_h / bh, fy=face_h / bh, interpolation=cv2.INTER_AREA)
        cx, cy = 250 + i * 430, 300 + (i % 2) * 450
        y0, x0 = cy - head.shape[0] // 2, cx - head.shape[1] // 2
        frame[y0:y0 + head.shape[0], x0:x0 + head.shape[1]] = head
        centres.append((cx, cy))
    return frame, centres


def test_small_faces_found_in_a_large_frame(rec: Recognizer) -> None:
    frame, centres = small_face_scene(rec)
    assert rec.detector.detect(frame) == []  # the whole-frame pass alone sees none of them
    found = rec.detect(frame)
    assert len(found) == 4
    for cx, cy in centres:
        assert any(abs(d.box[0] + d.box[2] / 2 - cx) < 20 and abs(d.box[1] + d.box[3] / 2 - cy) < 20
                   for d in found)
    names = {f.name for f in rec.process(frame).faces}
    assert {"Obama", "Biden"} <= names


def test_small_faces_found_on_a_stream_within_one_tile_sweep(rec: Recognizer) -> None:
    frame, _ = small_face_scene(rec)
    tracker = FaceTracker()
    sweep = len(TilePlan(1920, 1080).regions) // tracker.tiles_per_frame + 2
    counts = [len(rec.process(frame, i, tracker).faces) for i in range(sweep + 5)]
    assert counts[-1] == 4  # all found within a sweep of the tiles...
    assert counts[-5:] == [4] * 5  # ...and kept, every frame, by the regions around the tracks


def test_tile_plan_covers_the_frame() -> None:
    plan = TilePlan(1920, 1080)
    covered = np.zeros((1080, 1920), bool)
    for x, y, side in plan.regions:
        assert 0 <= x and x + side <= 1920 and 0 <= y and y + side <= 1080
        covered[y:y + side, x:x + side] = True
    assert covered.all()
    assert TilePlan(320, 240).regions == []  # a small frame needs no tiles
