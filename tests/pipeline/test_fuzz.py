"""Property-based fuzzing of the decode -> detect -> embed path.

Hypothesis mutates real JPEG and PNG files (flipped bytes, truncation, spliced junk,
rewritten headers) and feeds them through the same path ``facerec enroll`` takes. The
only acceptable outcomes are a decoded image processed to the end, or `ImageError`.
Bounded by example count and deadline so it fits in CI.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.pipeline.errors import ImageError
from app.pipeline.imageio import decode_image
from app.pipeline.recognition.align import align_face
from app.pipeline.recognition.detector import FaceDetector
from app.pipeline.recognition.embedder import FaceEmbedder
from tests.conftest import FR


def _seeds() -> list[bytes]:
    im = Image.open(FR / "obama.jpg").convert("RGB")
    im.thumbnail((256, 256))
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "splice", "header", "repeat"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "header":  # rewrite bytes near the start, where sizes and markers live
            pos = draw(st.integers(0, min(len(data) - 1, 40)))
            data[pos] = draw(st.integers(0, 255))
        else:
            end = min(len(data), at + draw(st.integers(1, 32)))
            data[at:at] = data[at:end] * draw(st.integers(1, 8))
    return bytes(data)


@pytest.fixture(scope="module")
def models() -> tuple[FaceDetector, FaceEmbedder]:
    det = FaceDetector()
    yield det, FaceEmbedder(threads=1)
    det.close()


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(mutated(), st.binary(max_size=2048)))
def test_decode_detect_embed_never_crashes(models, data: bytes) -> None:
    det, emb = models
    try:
        rgb = decode_image(data, "fuzz")
    except ImageError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    for d in det.detect(rgb):
        vec = emb.embed(align_face(rgb, d))
        assert vec.shape == (1, 512) and np.isfinite(vec).all()
