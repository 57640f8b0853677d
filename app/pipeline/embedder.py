"""FaceNet-512 embeddings with the LiteRT interpreter."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelError
from app.pipeline.models import EMBEDDER, verified_model
from app.pipeline.native import quiet_native_stderr

log = logging.getLogger(__name__)

EMBEDDING_DIM = 512


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


class FaceEmbedder:
    """Map aligned 160x160 RGB face crops to L2-normalised 512-d vectors.

    Parameters
    ----------
    threads : int
        LiteRT interpreter threads; 0 uses every core.
    model_dir : Path or None
        Directory of the model files; None for the bundled ones.
    """

    def __init__(self, threads: int = 0, model_dir: Path | None = None) -> None:
        path = verified_model(EMBEDDER, model_dir)
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
            (N, 512) float32, each row of unit length.
        """
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.shape[0] == 0:
            return np.empty((0, EMBEDDING_DIM), np.float32)
        emb = self._run(standardize(faces))
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        out: np.ndarray = (emb / np.maximum(norms, 1e-12)).astype(np.float32)
        return out
