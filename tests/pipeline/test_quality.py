"""The snapshot quality check: motion blur is refused, sharp faces pass.

The cut-off is re-measured here (on the square crop `face_sharpness` measures) on
webcam-like frames made from every shared photo with one face (170 px high in a 640x480
frame, JPEG), sharp and with a straight motion blur 15 % of the face height long,
horizontal (a head turn) and vertical (a nod).
README.md "Snapshot quality" has the full measurement (three face sizes, seven blur
lengths, four angles, the effect on the embedding).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.errors import NoFaceError
from app.pipeline.imageio import load_image
from app.pipeline.recognition.align import warp
from app.pipeline.recognition.detector import FaceDetector
from app.pipeline.recognition.quality import (
    MIN_SHARPNESS,
    blurred_frame,
    face_sharpness,
    sharpness,
    square_transform,
)
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.types import PHOTO_OF_ONE, SNAPSHOT, Refusal
from tests.conftest import DEEPFACE, FR

FACE_PX = 170


def webcam_frame(rgb: np.ndarray, box: tuple[int, int, int, int], face_px: int = FACE_PX,
                 size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The photo's face *face_px* high, centred in a grey frame of *size*."""
    x, y, w, h = box
    s = face_px / h
    small = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)),
                       interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, size[0] / 2 - (x + w / 2) * s], [0, 1, size[1] * 0.45 - (y + h / 2) * s]])
    return cv2.warpAffine(small, m, size, borderMode=cv2.BORDER_CONSTANT, borderValue=(110,) * 3)


def jpeg(rgb: np.ndarray, quality: int = 85) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    d = FaceDetector(0.5)
    yield d
    d.close()


def test_cutoff_separates_sharp_and_motion_blurred_faces(detector: FaceDetector) -> None:
    photos = sorted(DEEPFACE.glob("img*.jpg")) + [FR / n for n in ("obama.jpg", "obama2.jpg",
                                                                   "obama3.jpg", "biden.jpg")]
    sharp, blurred = [], []
    for photo in photos:
        rgb = load_image(photo)
        dets = detector.detect(rgb)
        if len(dets) != 1 or dets[0].box[3] < FACE_PX:  # one face, never enlarged
            continue
        frame = webcam_frame(rgb, dets[0].box)
        for angle in (None, 0, 90):  # a head turn and a nod
            shot = jpeg(frame if angle is None else blurred_frame(frame, round(0.15 * FACE_PX), angle))
            found = detector.detect(shot)
            if not found:
                continue
            score = face_sharpness(shot, detector.refine(shot, found[0]))
            (sharp if angle is None else blurred).append(score)
    print(f"\n{len(sharp)} sharp frames >= {min(sharp):.3f}; {len(blurred)} blurred frames: "
          f"{np.mean(np.array(blurred) < MIN_SHARPNESS):.1%} below {MIN_SHARPNESS}")
    assert len(sharp) >= 50 and len(blurred) >= 100
    assert min(sharp) >= MIN_SHARPNESS * 1.1  # every sharp face passes, with room
    assert np.mean(np.array(blurred) < MIN_SHARPNESS) >= 0.97


def test_a_motion_blurred_snapshot_is_refused(data_dir: Path, detector: FaceDetector) -> None:
    """A quick nod: the still frame is accepted, the one smeared downwards is refused."""
    rgb = load_image(FR / "biden.jpg")
    frame = webcam_frame(rgb, detector.detect(rgb)[0].box, 260)
    smeared = jpeg(blurred_frame(frame, 24, 90))
    with Recognizer.open(Paths(data_dir), Settings()) as rec:
        assert rec.prepare_image(jpeg(frame), policy=SNAPSHOT).face is not None
        with pytest.raises(NoFaceError, match="face too blurred: hold still") as refused:
            rec.prepare_image(smeared, policy=SNAPSHOT)
        assert refused.value.reason is Refusal.BLURRED
        with pytest.raises(NoFaceError, match="face too blurred$"):  # a photo cannot hold still
            rec.prepare_image(smeared, policy=PHOTO_OF_ONE)
        # The face is found and its Laplacian variance is high: the old check (variance
        # of the Laplacian >= 20) took this frame.
        face = rec.prepare_image(smeared).detection
        crop = warp(smeared, square_transform(rec.detector.refine(smeared, face)))
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        assert cv2.Laplacian(grey, cv2.CV_64F).var() > 20


def test_flat_or_tiny_crops_are_not_sharp() -> None:
    assert sharpness(np.full((160, 160, 3), 128, np.uint8)) == 0.0
    assert sharpness(np.zeros((8, 8, 3), np.uint8)) == 0.0
