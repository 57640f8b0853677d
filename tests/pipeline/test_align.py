"""The crop reproduces the geometry FaceNet was trained on, from our own detector."""

from __future__ import annotations

import cv2
import pytest

from app.pipeline.imageio import load_image
from app.pipeline.recognition.align import CROP_SIZE, align_face, crop_transform
from app.pipeline.recognition.detector import FaceDetector
from app.pipeline.recognition.embedder import FaceEmbedder
from tests.conftest import DEEPFACE, FR

PHOTOS = [FR / "obama.jpg", FR / "obama2.jpg", FR / "biden.jpg",
          *(DEEPFACE / f"img{i}.jpg" for i in (2, 3, 4, 5, 6, 7, 8, 9, 10))]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    det = FaceDetector()
    yield det
    det.close()


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_face_sits_where_the_training_crops_put_it(detector: FaceDetector, photo) -> None:
    # facenet's MTCNN crops of LFW (box + 24 px, stretched to 160x160) put BlazeFace's
    # keypoints, on average, at: eyes (51, 67) and (112, 66), nose (81, 93), mouth (82, 118).
    # A square crop around BlazeFace's box puts the eyes near y = 50 instead.
    det = detector.detect(load_image(photo))[0]
    m = crop_transform(det)
    right_eye, left_eye, nose, mouth = (det.keypoints[:4] @ m[:, :2].T + m[:, 2])
    assert abs(right_eye[1] - left_eye[1]) < 0.5  # level
    assert 58 < right_eye[1] < 77 and 108 < mouth[1] < 128
    assert 45 < left_eye[0] - right_eye[0] < 75
    assert abs((right_eye[0] + left_eye[0]) / 2 - CROP_SIZE / 2) < 14


def test_a_tilted_face_is_embedded_like_the_upright_one(detector: FaceDetector) -> None:
    rgb = load_image(FR / "obama.jpg")
    h, w = rgb.shape[:2]
    emb = FaceEmbedder(threads=2)
    upright = emb.embed(align_face(rgb, detector.detect(rgb)[0]))[0]
    for angle in (-25, 25):
        rot = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
        tilted = emb.embed(align_face(rot, detector.detect(rot)[0]))[0]
        assert float(upright @ tilted) > 0.9
