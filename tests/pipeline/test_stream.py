"""The stream pipeline: both cores, the same results, in order; files read ahead."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.recognition.sources import ReadAhead, VideoSource
from app.pipeline.recognition.stream import GalleryFollower, Processed, Stream, StreamPipeline
from app.pipeline.recognition.tracking import FaceTracker
from tests.conftest import DEEPFACE, FR
from tests.pipeline.test_tracking import frames_of, small_face_scene


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recognizer:
    r = Recognizer.open(Paths(tmp_path_factory.mktemp("data")), Settings())
    r.enroll("Obama", [r.prepare_file(FR / "obama.jpg").face])
    r.enroll("Biden", [r.prepare_file(FR / "biden.jpg").face])
    r.enroll("Jolie", [r.prepare_file(DEEPFACE / "img1.jpg").face])
    yield r
    r.close()


def as_rows(result) -> list[tuple]:  # noqa: ANN001
    return [(f.box, f.name, f.similarity, f.score, f.track) for f in result.faces]


def small_faces_moving(rec: Recognizer, n: int = 40) -> list[np.ndarray]:
    """A 720p stream of four faces 60-150 px high, drifting: regions, tiles, second looks."""
    photos = [FR / "obama2.jpg", DEEPFACE / "img2.jpg", FR / "biden.jpg", DEEPFACE / "img3.jpg"]
    frame, _ = small_face_scene(rec, (1280, 720), (150, 60, 110, 90), photos,
                                [(220, 220), (640, 200), (1000, 420), (420, 520)])
    return [cv2.warpAffine(frame, np.float32([[1, 0, 4 * np.sin(i / 3)], [0, 1, 2 * np.cos(i / 4)]]),
                           (1280, 720), borderMode=cv2.BORDER_REPLICATE) for i in range(n)]


def test_the_pipeline_gives_the_results_of_one_frame_at_a_time(rec: Recognizer, face_video: Path) -> None:
    # Detection of frame n runs while frame n-1 is embedded, on another detector
    # instance: the tracker must still see the same calls in the same order.
    for frames in (frames_of(face_video), small_faces_moving(rec)):
        tracker = FaceTracker()
        one_by_one = [rec.process(f, i, tracker) for i, f in enumerate(frames)]
        done = []
        with StreamPipeline(rec) as pipe:
            for f in frames:
                done += pipe.push(f)
            done += pipe.finish()
        assert [p.frame for p in done] == frames  # every frame once, in order
        assert [p.result.frame_index for p in done] == list(range(len(frames)))
        assert [as_rows(p.result) for p in done] == [as_rows(r) for r in one_by_one]
        assert sum(r.embedded for r in one_by_one) > 0


def test_a_frame_stays_in_flight_until_the_next_push_or_finish(rec: Recognizer) -> None:
    frame = small_faces_moving(rec, 2)
    with StreamPipeline(rec) as pipe:
        assert pipe.push(frame[0]) == [] and pipe.busy
        first = pipe.push(frame[1], tag="second")
        assert [p.result.frame_index for p in first] == [0]
        (last,) = pipe.finish()
        assert last.tag == "second" and not pipe.busy
        assert pipe.finish() == []
    with StreamPipeline(rec, overlap=False) as pipe:  # one core: each push finishes its frame
        assert [p.result.frame_index for p in pipe.push(frame[0])] == [0]


def test_read_ahead_yields_every_frame_in_order(face_video: Path) -> None:
    expected = frames_of(face_video)
    reader = ReadAhead(VideoSource(str(face_video)), depth=2)
    try:
        got = []
        while (f := reader.read()) is not None:
            got.append(f)
        assert reader.read() is None  # and stays at the end
    finally:
        reader.close()
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert len(reader.read_ms) == len(expected) and min(reader.read_ms) > 0  # decode times


def test_read_ahead_closed_midway_stops_and_releases(face_video: Path) -> None:
    source = VideoSource(str(face_video))
    reader = ReadAhead(source, depth=1)
    assert reader.read() is not None
    reader.close()
    assert not reader._thread.is_alive()
    assert source._cap is None  # released by the reader thread


def test_a_motion_jpeg_file_is_decoded_on_one_thread(face_video: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg's frame threads only cost CPU for a reader on a thread of its own: a
    # Motion-JPEG file is opened again with one decoding thread, and gives the same pixels.
    cap = cv2.VideoCapture(str(face_video))
    expected = []
    while (got := cap.read())[0]:
        expected.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    cap.release()
    opened: list[tuple] = []
    real = cv2.VideoCapture

    def spy(*args: object) -> cv2.VideoCapture:
        opened.append(args[2:])
        return real(*args)

    monkeypatch.setattr(cv2, "VideoCapture", spy)
    with VideoSource(str(face_video)) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert opened[-1] == ([cv2.CAP_PROP_N_THREADS, 1],)
    assert len(frames) == len(expected) == 72
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected))


class _RawJpegFile(VideoSource):
    """An MJPG file whose capture hands over each frame's JPEG bytes, as a V4L2 webcam's does."""

    def _open(self, width: int | None, height: int | None) -> cv2.VideoCapture:
        cap = super()._open(width, height)
        assert cap.set(cv2.CAP_PROP_FORMAT, -1)
        self._jpeg = True
        return cap


def test_a_camera_s_jpeg_frames_are_decoded_here_to_rgb(face_video: Path) -> None:
    # The frames are the ones OpenCV decodes itself (FFmpeg's decoder here: a grey level
    # apart at most on average), in RGB order, not BGR.
    with VideoSource(str(face_video)) as plain, _RawJpegFile(str(face_video)) as raw:
        assert raw._jpeg
        for _ in range(3):
            a, b = plain.read(), raw.read()
            assert a is not None and b is not None and a.shape == b.shape == (480, 640, 3)
            assert float(np.abs(a.astype(np.int16) - b).mean()) < 1.5
            assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 1.0


def test_run_stream_reports_each_frame_once(rec: Recognizer, face_video: Path) -> None:
    seen = []
    with Stream(rec, str(face_video), lambda p: seen.append((p.result.frame_index, p.tag))) as stream:
        n = stream.run(30)
    assert n == 30 and seen == [(i, i) for i in range(30)]


@pytest.mark.parametrize("follow", [True, False])
def test_a_stream_follows_removals_and_renames_made_elsewhere(data_dir: Path, face_video: Path,
                                                             follow: bool) -> None:
    # The video shows Obama (frames 0-23), then Biden (24-47). Another recognizer on the
    # same data directory (the CLI, another window) renames Obama at frame 4 and removes
    # Biden at frame 30, while the stream plays: a stream that follows the gallery (the
    # window, `watch`) says so a few frames later; one that does not (bench) never does.
    paths = Paths(data_dir)
    names: list[set[str | None]] = []
    with Recognizer.open(paths) as rec, Recognizer.open(paths) as other:
        rec.enroll("Obama", [rec.prepare_file(FR / "obama.jpg").face])
        rec.enroll("Biden", [rec.prepare_file(FR / "biden.jpg").face])

        def on_result(p: Processed) -> None:
            names.append({f.name for f in p.result.faces})
            if p.tag == 4:
                other.rename("Obama", "Barack Obama")
            elif p.tag == 30:
                other.remove("Biden")

        follower = GalleryFollower(rec, every_s=0.0) if follow else None
        with Stream(rec, str(face_video), on_result, follower=follower) as stream:
            stream.run(48)
    assert len(names) == 48
    assert names[2] == {"Obama"} and names[28] == {"Biden"}
    if follow:
        assert all(n == {"Barack Obama"} for n in names[8:20])
        assert all(n == {None} for n in names[34:])  # Biden is a stranger now
    else:
        assert all(n == {"Obama"} for n in names[8:20])
        assert all(n == {"Biden"} for n in names[34:])
