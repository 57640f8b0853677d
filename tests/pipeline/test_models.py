"""Model files are verified before use: missing, truncated or altered ones are refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from app.pipeline.errors import ModelError
from app.pipeline.models import DETECTOR, EMBEDDER, EMBEDDING_MEAN, models_dir, sha256_of, verified_model
from app.pipeline.recognition.detector import FaceDetector
from app.pipeline.recognition.embedder import FaceEmbedder
from tests.conftest import REPO


@pytest.mark.parametrize("spec", [DETECTOR, EMBEDDER, EMBEDDING_MEAN], ids=["detector", "embedder", "mean"])
def test_bundled_models_match_their_pinned_digest(spec) -> None:
    assert sha256_of(models_dir() / spec.filename) == spec.sha256


def test_models_readme_lists_the_pinned_digests() -> None:
    readme = (REPO / "models" / "README.md").read_text(encoding="utf-8")
    digests = set(re.findall(r"\b[0-9a-f]{64}\b", readme))
    assert {DETECTOR.sha256, EMBEDDER.sha256, EMBEDDING_MEAN.sha256} <= digests


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    for spec in (DETECTOR, EMBEDDER, EMBEDDING_MEAN):
        shutil.copy(models_dir() / spec.filename, d / spec.filename)
    return d


def test_missing_model(model_copy: Path) -> None:
    (model_copy / EMBEDDER.filename).unlink()
    with pytest.raises(ModelError, match="missing.*build_models"):
        FaceEmbedder(model_dir=model_copy)


def test_truncated_model(model_copy: Path) -> None:
    path = model_copy / EMBEDDER.filename
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="damaged or altered"):
        FaceEmbedder(model_dir=model_copy)


def test_altered_model(model_copy: Path) -> None:
    path = model_copy / DETECTOR.filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged or altered"):
        FaceDetector(model_dir=model_copy)


def test_intact_copy_loads(model_copy: Path) -> None:
    assert verified_model(EMBEDDER, model_copy).parent == model_copy
    FaceDetector(model_dir=model_copy).close()
