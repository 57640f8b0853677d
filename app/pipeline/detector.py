"""Face detection with MediaPipe Tasks (BlazeFace short-range)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelError
from app.pipeline.models import DETECTOR, verified_model
from app.pipeline.native import quiet_native_stderr
from app.pipeline.types import Detection

log = logging.getLogger(__name__)


class FaceDetector:
    """Find faces, with six keypoints each, in an RGB frame.

    Parameters
    ----------
    min_confidence : float
        Detections scoring below this are dropped.
    model_dir : Path or None
        Directory of the model files; None for the bundled ones.
    """

    def __init__(self, min_confidence: float = 0.5, model_dir: Path | None = None) -> None:
        path = verified_model(DETECTOR, model_dir)
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import FaceDetector as _MPFaceDetector
        from mediapipe.tasks.python.vision import FaceDetectorOptions
        from mediapipe.tasks.python.vision.core.vision_task_running_mode import (
            VisionTaskRunningMode,
        )

        self.min_confidence = float(min_confidence)
        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
            running_mode=VisionTaskRunningMode.IMAGE,
            min_detection_confidence=self.min_confidence,
            min_suppression_threshold=0.3,
        )
        try:
            with quiet_native_stderr():
                self._mp = _MPFaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load the face detector {path}: {exc}") from None
        self._warm = False

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB ``uint8`` (H, W, 3) frame, largest first."""
        import mediapipe as mp

        h, w = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._warm:
            result = self._mp.detect(image)
        else:  # the first run logs a native warning about tensor alignment
            with quiet_native_stderr():
                result = self._mp.detect(image)
            self._warm = True
        out = []
        for d in result.detections:
            score = float(d.categories[0].score) if d.categories else 0.0
            if score < self.min_confidence:
                continue
            bb = d.bounding_box
            x0, y0 = max(0, int(bb.origin_x)), max(0, int(bb.origin_y))
            x1, y1 = min(w, int(bb.origin_x + bb.width)), min(h, int(bb.origin_y + bb.height))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            kps = np.array([[k.x * w, k.y * h] for k in d.keypoints], dtype=np.float32)
            raw = (float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height))
            out.append(Detection((x0, y0, x1 - x0, y1 - y0), kps.reshape(-1, 2), score, raw))
        out.sort(key=lambda d: d.area, reverse=True)
        return out

    def close(self) -> None:
        """Release the native graph."""
        mp_det, self._mp = getattr(self, "_mp", None), None
        if mp_det is not None:
            with quiet_native_stderr():
                mp_det.close()
