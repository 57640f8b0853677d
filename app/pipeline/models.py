"""The bundled model files: where they are and proof that they are intact.

Each model's SHA-256 is pinned here (and listed in models/README.md). A missing,
truncated or altered file is refused with a message that says what to do, instead of
failing deep inside a native library or, worse, producing wrong embeddings.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.pipeline.errors import ModelError

ENV_MODELS_DIR = "FACEREC_MODELS_DIR"


@dataclass(frozen=True)
class ModelSpec:
    """A model file and its pinned digest."""

    filename: str
    sha256: str
    description: str


DETECTOR = ModelSpec(
    "face_detection_short_range.tflite",
    "7713abe20e56ef319b38dbd1b030d36bcd618d4dc2ceeb3510e1b65055a06515",
    "MediaPipe BlazeFace short-range face detector",
)
EMBEDDER = ModelSpec(
    "facenet512.tflite",
    "02379a77a828a6f42772c552339f4568e3e40ea3f00fd903a83eac73424620d0",
    "FaceNet-512 (Inception-ResNet-v1, CASIA-WebFace) face embedder",
)
#: The mean FaceNet embedding of many people's faces, subtracted from every embedding
#: (`app.pipeline.recognition.embedder`). Made by ``facerec embedding-mean`` (models/README.md).
EMBEDDING_MEAN = ModelSpec(
    "facenet512_mean.npy",
    "e9df3b9a5fdcebeab4efd93b569c415b0f1b8494d6c5a2b500bbdc27d8a0f155",
    "mean FaceNet-512 embedding of LFW faces",
)

_verified: dict[tuple[str, int, int], str] = {}


def models_dir() -> Path:
    """Directory holding the model files (read-only at run time).

    ``FACEREC_MODELS_DIR`` overrides; a PyInstaller build uses its bundle directory;
    otherwise ``models/`` at the repository root.
    """
    if os.environ.get(ENV_MODELS_DIR):
        return Path(os.environ[ENV_MODELS_DIR])
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "models"
    return Path(__file__).resolve().parents[2] / "models"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_model(spec: ModelSpec, directory: Path | None = None) -> Path:
    """Return the path of *spec*'s file after checking its SHA-256.

    Raises
    ------
    ModelError
        If the file is missing, unreadable or does not match its pinned digest.
    """
    path = (directory or models_dir()) / spec.filename
    fix = ("reinstall facerec, or rebuild the models with "
           "'python packaging/build_models.py' (see models/README.md)")
    if spec is EMBEDDING_MEAN:
        fix = "reinstall facerec, or make it with 'facerec embedding-mean' (see models/README.md)"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelError(f"model file missing: {path} ({spec.description}); {fix}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}; {fix}") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if _verified.get(key) == spec.sha256:
        return path
    try:
        digest = sha256_of(path)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}; {fix}") from None
    if digest != spec.sha256:
        raise ModelError(
            f"model file {path} is damaged or altered (SHA-256 {digest[:12]}..., "
            f"expected {spec.sha256[:12]}...; {st.st_size} bytes); {fix}"
        )
    _verified[key] = spec.sha256
    return path
