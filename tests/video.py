"""Write synthetic test videos from still photos (tests use a video file as the camera)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.imageio import load_image


def fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fill a (width, height) frame with the photo, as a webcam frames a sitter.

    The photo is scaled to cover the frame and cropped; vertically the crop keeps the
    upper part, where portraits have the face.
    """
    w, h = size
    scale = max(w / rgb.shape[1], h / rgb.shape[0])
    big = cv2.resize(rgb, (max(w, round(rgb.shape[1] * scale)), max(h, round(rgb.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    x0 = (big.shape[1] - w) // 2
    y0 = int((big.shape[0] - h) * 0.1)
    return np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])


def write_slideshow(path: Path, photos: Sequence[Path], frames_each: int = 24,
                    size: tuple[int, int] = (640, 480), fps: float = 12.0) -> Path:
    """Show each photo for *frames_each* frames, drifting slightly; MJPG in AVI."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():  # pragma: no cover - MJPG is built into every OpenCV
        raise RuntimeError("cannot write MJPG video")
    try:
        for photo in photos:
            base = fit(load_image(photo), size)
            for i in range(frames_each):
                shift = np.float32([[1, 0, (i % 8) - 4], [0, 1, ((i // 2) % 6) - 3]])
                frame = cv2.warpAffine(base, shift, size, borderMode=cv2.BORDER_REPLICATE)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
