"""FaceNet-512 embeddings with the LiteRT interpreter, centred on the mean face.

FaceNet's unit embeddings of all faces share a common component: the mean embedding of
many people's photos has length 0.19, so every pair of faces, even of two strangers,
gets that much similarity for free. Subtracting that mean and normalising again (as
facenet's own LFW validation does with ``--subtract_mean``) spreads different people
apart: on LFW View 2 (10-fold) accuracy 98.72 -> 98.95 %, TAR at FAR 0.1 % 0.948 ->
0.973, for one vector subtraction per face. The mean ships as a model file
(`models.EMBEDDING_MEAN`, verified like the models) and is made by
``facerec embedding-mean`` from photos that are in none of the benchmark's pairs
(models/README.md, "Centring").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelError
from app.pipeline.models import EMBEDDER, EMBEDDING_MEAN, verified_model
from app.pipeline.native import quiet_native_stderr
from app.pipeline.types import EMBEDDING_DIM

log = logging.getLogger(__name__)



def default_threads() -> int:
    """Inference threads when the setting is 0: every core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def standardize(faces: np.ndarray) -> np.ndarray:
    """Map ``uint8`` pixels to the model's input range: ``(x - 127.5) / 128``.

    The 20180408-102900 FaceNet was trained with this *fixed* standardisation (its
    training flag ``--use_fixed_image_standardization``), not with the per-image
    "prewhitening" of older FaceNet releases. Measured on the shared pairs: ROC AUC
    1.000 with it against 0.994 with prewhitening (README.md, "Preprocessing").
    """
    return (faces.astype(np.float32) - np.float32(127.5)) * np.float32(1.0 / 128.0)


def load_mean(model_dir: Path | None = None) -> np.ndarray:
    """The shipped mean embedding, verified against its pinned SHA-256.

    Raises
    ------
    ModelError
        If the file is missing, altered or not a finite 512-d vector.
    """
    path = verified_model(EMBEDDING_MEAN, model_dir)
    try:
        mean: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the mean embedding {path}: {exc}") from None
    if mean.shape != (EMBEDDING_DIM,) or mean.dtype != np.float32 or not np.isfinite(mean).all():
        raise ModelError(f"{path} is not a finite float32 vector of {EMBEDDING_DIM}")
    return mean


def person_balanced_mean(embeddings: dict[str, list[np.ndarray]]) -> np.ndarray:
    """The mean over people of each person's mean embedding, as float32.

    Each person counts once, however many photos they have: a mean over photos would
    lean towards the few people photographed hundreds of times (LFW holds 530 photos of
    one person), and then subtracting it would favour them instead of centring faces in
    general.
    """
    people = [np.mean(np.asarray(v, np.float64), axis=0) for _, v in sorted(embeddings.items()) if len(v)]
    if not people:
        raise ValueError("no embeddings")
    out: np.ndarray = np.mean(people, axis=0).astype(np.float32)
    return out


def save_mean(mean: np.ndarray, path: Path) -> None:
    """Write a mean embedding as `load_mean` reads it (the same vector gives the same bytes)."""
    with open(path, "wb") as f:
        np.save(f, np.asarray(mean, np.float32).reshape(EMBEDDING_DIM), allow_pickle=False)


class FaceEmbedder:
    """Map aligned 160x160 RGB face crops to L2-normalised 512-d vectors.

    Parameters
    ----------
    threads : int
        LiteRT interpreter threads; 0 uses every core.
    model_dir : Path or None
        Directory of the model files; None for the bundled ones.
    centred : bool
        Subtract the shipped mean embedding (the app always does); False gives the
        network's own embeddings, from which ``facerec embedding-mean`` makes the mean.
    """

    def __init__(self, threads: int = 0, model_dir: Path | None = None, *, centred: bool = True) -> None:
        path = verified_model(EMBEDDER, model_dir)
        self.mean = load_mean(model_dir) if centred else None
        from ai_edge_litert.interpreter import Interpreter

        self.threads = threads or default_threads()
        try:
            with quiet_native_stderr():
                self._interp = Interpreter(model_path=str(path), num_threads=self.threads)
                self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load the face embedder {path}: {exc}") from None
        inp = self._interp.get_input_details()[0]
        self._in, self._out = inp["index"], self._interp.get_output_details()[0]["index"]
        self.input_size = int(inp["shape"][1])
        self._batch = int(inp["shape"][0])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if n != self._batch:
            self._interp.resize_tensor_input(self._in, [n, self.input_size, self.input_size, 3])
            self._interp.allocate_tensors()
            self._batch = n
        self._interp.set_tensor(self._in, batch)
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._out), dtype=np.float32, copy=True)

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Embed a batch of crops.

        Parameters
        ----------
        faces : ndarray
            (N, 160, 160, 3) ``uint8`` RGB crops, or one (160, 160, 3) crop.

        Returns
        -------
        ndarray
            (N, EMBEDDING_DIM) float32, each row of unit length: the network's embedding minus
            the mean embedding, normalised (unless built with ``centred=False``).
        """
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.shape[0] == 0:
            return np.empty((0, EMBEDDING_DIM), np.float32)
        emb = _unit(self._run(standardize(faces)))
        if self.mean is not None:
            emb = _unit(emb - self.mean)
        return emb


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32."""
    out: np.ndarray = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return out
