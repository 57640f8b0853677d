"""Tracking across frames, identity votes and small faces in large frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.imageio import load_image
from app.pipeline.recognition.detector import (
    MAX_FACE_PER_TILE,
    MIN_FACE_PX,
    TILE_PER_FACE,
    WHOLE_FRAME_FINDS,
    TilePlan,
    iou,
)
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.recognition.sources import VideoSource
from app.pipeline.recognition.tracking import FaceTracker
from tests.conftest import DEEPFACE, FR


@pytest.fixture
def rec(data_dir: Path) -> Recognizer:
    r = Recognizer.open(Paths(data_dir), Settings())
    r.enroll("Obama", [r.prepare_file(FR / "obama.jpg").face])
    r.enroll("Biden", [r.prepare_file(FR / "biden.jpg").face])
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


SMALL_FACES = [FR / "obama.jpg", FR / "biden.jpg", DEEPFACE / "img1.jpg", DEEPFACE / "img13.jpg"]


def small_face_scene(rec: Recognizer, size: tuple[int, int] = (1920, 1080),
                     heights: tuple[int, ...] = (40, 48, 60, 80),
                     photos: list[Path] = SMALL_FACES,
                     centres: list[tuple[int, int]] | None = None,
                     ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A large grey frame with small faces (real photos, scaled) at known spots."""
    w, h = size
    frame = np.full((h, w, 3), 105, np.uint8)
    centres = centres or [(250 + i * 430, 300 + (i % 2) * 450) for i in range(len(photos))]
    for photo, face_h, (cx, cy) in zip(photos, heights, centres):
        rgb = load_image(photo)
        x, y, bw, bh = rec.detector.detect(rgb)[0].box
        fx, fy = x + bw // 2, y + bh // 2
        head = rgb[max(0, fy - bh):fy + bh, max(0, fx - bw):fx + bw]  # 2x the face box
        head = cv2.resize(head, None, fx=face_h / bh, fy=face_h / bh, interpolation=cv2.INTER_AREA)
        y0, x0 = cy - head.shape[0] // 2, cx - head.shape[1] // 2
        frame[y0:y0 + head.shape[0], x0:x0 + head.shape[1]] = head
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


def test_faces_at_mid_distance_in_720p_are_found_and_named(rec: Recognizer) -> None:
    # People two or three metres from a 720p webcam: faces 90-150 px high, too small for
    # the whole-frame pass to place precisely (or, under ~140 px, to find at all) and
    # larger than the overlap of the finest tiles. Photos other than the enrolled ones.
    rec.enroll("Jolie", [rec.prepare_file(DEEPFACE / "img1.jpg").face])
    photos = [FR / "obama2.jpg", DEEPFACE / "img2.jpg", FR / "obama3.jpg", DEEPFACE / "img13.jpg",
              DEEPFACE / "img4.jpg"]
    centres = [(140, 200), (600, 200), (1000, 420), (400, 520), (830, 560)]
    frame, centres = small_face_scene(rec, (1280, 720), (90, 110, 150, 120, 130), photos, centres)
    faces = rec.process(frame).faces
    named = {}
    for cx, cy in centres:
        hit = [f for f in faces if abs(f.box[0] + f.box[2] / 2 - cx) < 30
               and abs(f.box[1] + f.box[3] / 2 - cy) < 30]
        assert len(hit) == 1, (cx, cy, [f.box for f in faces])
        named[(cx, cy)] = hit[0].name
    assert list(named.values()) == ["Obama", "Jolie", "Obama", None, "Jolie"]
    assert len(faces) == 5


def test_small_faces_are_located_again_before_embedding(data_dir: Path) -> None:
    # The whole-frame pass places a 150 px face in a 720p frame coarsely (crops measured
    # at cosine 0.57-0.95 to the photo's own); detecting it again in a region around it
    # gives the photo's own embedding back, so the similarity to its enrollment stays high.
    photos = [FR / "obama.jpg", FR / "biden.jpg", DEEPFACE / "img1.jpg", DEEPFACE / "img13.jpg",
              DEEPFACE / "img20.jpg", DEEPFACE / "img22.jpg"]
    with Recognizer.open(Paths(data_dir), Settings()) as r:
        for k, photo in enumerate(photos):
            r.enroll(f"P{k}", [r.prepare_file(photo).face])
        centres = [(220 + 420 * (k % 3), 190 + 340 * (k // 3)) for k in range(len(photos))]
        frame, _ = small_face_scene(r, (1280, 720), (150,) * len(photos), photos, centres)
        faces = r.process(frame).faces
        by_place = {}
        for f in faces:
            cx, cy = f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2
            k = min(range(len(centres)), key=lambda i: abs(centres[i][0] - cx) + abs(centres[i][1] - cy))
            by_place[k] = (f.name, round(f.similarity, 3))
    assert [by_place[k][0] for k in range(len(photos))] == [f"P{k}" for k in range(len(photos))]
    assert min(sim for _, sim in by_place.values()) >= 0.9, by_place


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080), (3840, 2160)])
def test_tile_plan_holds_every_small_face_whole_in_some_tile(size: tuple[int, int]) -> None:
    # Every face from MIN_FACE_PX up to what the whole-frame pass finds, anywhere in the
    # frame, lies inside a tile (clear of its inner edges) that sees it at a size the
    # model detects: no face falls between tiles or between levels.
    w, h = size
    regions = np.array(TilePlan(w, h).regions, dtype=np.float64).reshape(-1, 3)
    rx, ry, side = regions.T
    margin = 0.02 * side
    for face in np.linspace(MIN_FACE_PX, WHOLE_FRAME_FINDS * max(w, h), 12):
        usable = (face <= MAX_FACE_PER_TILE * side) & (face >= side / TILE_PER_FACE)
        xs = np.arange(0, w - face, 6.0)
        ys = np.arange(0, h - face, 6.0)
        fits_x = usable[None, :] & ((rx == 0) | (xs[:, None] >= rx + margin)) & (
            (rx + side >= w) | (xs[:, None] + face <= rx + side - margin))
        fits_y = usable[None, :] & ((ry == 0) | (ys[:, None] >= ry + margin)) & (
            (ry + side >= h) | (ys[:, None] + face <= ry + side - margin))
        held = (fits_y.astype(np.int32) @ fits_x.T.astype(np.int32)) > 0  # (ys, xs)
        assert held.all(), f"{face:.0f} px faces missed at {int((~held).sum())} spots in {size}"


def test_tile_plan_covers_the_frame() -> None:
    plan = TilePlan(1920, 1080)
    covered = np.zeros((1080, 1920), bool)
    for x, y, side in plan.regions:
        assert 0 <= x and x + side <= 1920 and 0 <= y and y + side <= 1080
        covered[y:y + side, x:x + side] = True
    assert covered.all()
    assert TilePlan(320, 240).regions == []  # a small frame needs no tiles


def test_a_correction_names_the_track_at_once(rec: Recognizer, face_video: Path) -> None:
    """The user says who a tracked face is, or is not: the track follows from the next frame."""
    frames = frames_of(face_video)
    tracker = FaceTracker()
    results = [rec.process(f, i, tracker) for i, f in enumerate(frames[24:30], start=24)]
    (biden,) = results[-1].faces
    assert biden.name == "Biden"
    obama = rec.store.person("Obama").id
    # "Not Biden": the same track shows Unknown from the next frame, and stays so.
    assert tracker.correct(biden.track, not_person=biden.person_id)
    names = [rec.process(f, i, tracker).faces[0].name for i, f in enumerate(frames[30:36], start=30)]
    assert names == [None] * 6
    # "This is Obama": shown at once, whatever the vote says.
    assert tracker.correct(biden.track, obama, similarity=0.61)
    faces = [rec.process(f, i, tracker).faces[0] for i, f in enumerate(frames[36:42], start=36)]
    assert [f.name for f in faces] == ["Obama"] * 6
    assert all(f.track == biden.track for f in faces)
    assert faces[0].similarity == pytest.approx(0.61)  # the vote still says Biden
    # A track that has ended cannot be corrected; the next person's track is not.
    assert not tracker.correct(999, obama)
    stranger = [rec.process(f, i, tracker).faces[0] for i, f in enumerate(frames[48:56], start=48)]
    assert stranger[-1].name is None and stranger[-1].track != biden.track


def test_an_unknown_face_names_its_best_candidate(rec: Recognizer, face_video: Path) -> None:
    frames = frames_of(face_video)
    tracker = FaceTracker()
    face = [rec.process(f, i, tracker) for i, f in enumerate(frames[48:56], start=48)][-1].faces[0]
    assert face.name is None and face.candidate in ("Obama", "Biden")
    still = rec.process(frames[50]).faces[0]
    assert still.name is None and still.candidate in ("Obama", "Biden")
    assert rec.process(frames[0]).faces[0].candidate is None  # named faces carry none


def test_video_names_follow_the_decision_rule(data_dir: Path, face_video: Path) -> None:
    """A track is named only when most of its embeddings meet the rule's bar on their own."""
    def names_on(settings: Settings) -> list[str | None]:
        with Recognizer.open(Paths(data_dir), settings) as r:
            tracker = FaceTracker()
            return [f.name for i, frame in enumerate(frames_of(face_video))
                    for f in r.process(frame, i, tracker).faces]

    with Recognizer.open(Paths(data_dir), Settings()) as r:
        r.enroll("Obama", [r.prepare_file(FR / "obama.jpg").face])
        r.enroll("Biden", [r.prepare_file(FR / "biden.jpg").face])
        obama_score = r.identify(r.prepare_file(FR / "obama3.jpg").face.embedding[None])[0].similarity
    assert names_on(Settings()).count("Obama") == 24
    # An expert minimum similarity above what Obama's frames reach leaves him Unknown.
    assert "Obama" not in names_on(Settings(min_similarity=round(obama_score + 0.05, 2)))


def test_a_steady_small_face_is_followed_without_a_region_on_every_frame(
        rec: Recognizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Faces of 150 and 170 px in 720p: the whole-frame pass finds them but places them
    # coarsely, so each has a region. While they hold still the region runs once in
    # LENS_FRAMES frames; the boxes and names are those a region on every frame gives.
    from app.pipeline.recognition import tracking

    photos = [FR / "obama2.jpg", FR / "biden.jpg"]
    still, _ = small_face_scene(rec, (1280, 720), (150, 170), photos, [(300, 300), (900, 380)])
    frames = [cv2.warpAffine(still, np.float32([[1, 0, 3 * np.sin(i / 3)], [0, 1, 0]]), (1280, 720),
                             borderMode=cv2.BORDER_REPLICATE) for i in range(30)]

    regions: list[int] = []
    detect_regions = rec.detector.detect_regions
    monkeypatch.setattr(rec.detector, "detect_regions",
                        lambda rgb, rs: regions.append(len(rs)) or detect_regions(rgb, rs))

    def run(lens_frames: int) -> tuple[list[list[tuple]], int]:
        monkeypatch.setattr(tracking, "LENS_FRAMES", lens_frames)
        regions.clear()
        tracker = FaceTracker(tiles_per_frame=0)  # no tiles: only the regions around the faces
        out = [sorted((face.box, face.name) for face in rec.process(f, i, tracker).faces)
               for i, f in enumerate(frames)]  # left to right
        return out, sum(regions)

    lens_frames = tracking.LENS_FRAMES
    every, every_runs = run(0)  # a region for each face on every frame, as before lenses
    lens, lens_runs = run(lens_frames)
    assert every_runs == 2 * (len(frames) - 1)
    assert lens_runs <= 2 * (len(frames) // lens_frames + 2)
    assert [[n for _, n in fr] for fr in lens] == [[n for _, n in fr] for fr in every]
    assert lens[-1] and {n for _, n in lens[-1]} == {"Obama", "Biden"}
    for a, b in zip(every, lens):
        for (box, _), (other, _) in zip(a, b):
            assert iou(box, other) >= 0.8, (box, other)


def test_a_steady_scene_coasts_with_the_same_names(
        rec: Recognizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A webcam sitter drifting by a pixel or two: COAST_RUN frames in a row (three of
    # four) need no whole-frame pass (the face's detection, moved with it, stands in), and
    # what is embedded and named is what a whole-frame pass on every frame gives.
    from app.pipeline.recognition import tracking

    frames = [small_face_scene(rec, (640, 480), (200,), [FR / "obama3.jpg"],
                               [(320 + round(2 * np.sin(i / 4)), 240 + round(np.cos(i / 5)))])[0]
              for i in range(24)]
    rec.use_two_detectors()  # a face embedded in a coasting frame is located on the other one
    passes: list[int] = []
    detect = rec.detector.detect
    monkeypatch.setattr(rec.detector, "detect", lambda rgb: passes.append(1) or detect(rgb))

    def run() -> list[list[tuple]]:
        passes.clear()
        tracker = FaceTracker()
        return [[(f.name, round(f.similarity, 2)) for f in rec.process(frame, i, tracker).faces]
                for i, frame in enumerate(frames)]

    coasting = run()
    coasting_passes = len(passes)
    monkeypatch.setattr(tracking, "COAST_MIN_RESPONSE", 2.0)  # never sure enough: no coasting
    every = run()
    assert len(passes) == len(frames)
    assert coasting_passes <= len(frames) // (tracking.COAST_RUN + 1) + 2
    assert coasting == every
    assert all(fr == [("Obama", fr[0][1])] for fr in coasting[1:])
