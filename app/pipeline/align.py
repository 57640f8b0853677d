"""Cut a face out of a frame as the embedder expects it.

The crop is a square centred on the detector's box, ``1 + margin`` times its larger
side, optionally rotated so the eyes are level (from the detector's keypoints). The
defaults were chosen by `facerec eval` on the shared pairs; see README.md "Alignment".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.pipeline.types import Detection

CROP_SIZE = 160
DEFAULT_MARGIN = 0.2
DEFAULT_ROTATE = True


def crop_transform(det: Detection, size: int = CROP_SIZE, margin: float = DEFAULT_MARGIN,
                   rotate: bool = DEFAULT_ROTATE) -> np.ndarray:
    """The 2x3 affine matrix mapping frame pixels to crop pixels."""
    x, y, w, h = det.raw_box if det.raw_box[2] > 0 else det.box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + margin)
    angle = 0.0
    if rotate:
        right_eye, left_eye = det.keypoints[0], det.keypoints[1]
        # The subject's right eye is on the image's left: this vector points right.
        angle = math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    return m


def align_face(rgb: np.ndarray, det: Detection, size: int = CROP_SIZE,
               margin: float = DEFAULT_MARGIN, rotate: bool = DEFAULT_ROTATE) -> np.ndarray:
    """Return the aligned (size, size, 3) ``uint8`` crop of one face.

    A large face is first shrunk with area averaging so the crop does not alias; parts
    of the crop outside the frame are filled by replicating the border.
    """
    m = crop_transform(det, size, margin, rotate)
    scale = math.hypot(m[0, 0], m[0, 1])
    if scale < 0.5:
        # Shrink the region around the face with INTER_AREA first (warpAffine would
        # sample every 1/scale-th pixel and alias), then warp the small image.
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
        pts = corners @ inv.T
        h, w = rgb.shape[:2]
        x0 = int(max(0, math.floor(pts[:, 0].min()) - 2))
        y0 = int(max(0, math.floor(pts[:, 1].min()) - 2))
        x1 = int(min(w, math.ceil(pts[:, 0].max()) + 2))
        y1 = int(min(h, math.ceil(pts[:, 1].max()) + 2))
        if x1 > x0 and y1 > y0:
            f = scale * 2.0  # leave the final factor of ~2 to the bilinear warp
            roi = rgb[y0:y1, x0:x1]
            small = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                               interpolation=cv2.INTER_AREA)
            fx, fy = small.shape[1] / roi.shape[1], small.shape[0] / roi.shape[0]
            # crop = m @ [x0 + u/fx, y0 + v/fy, 1]
            m2 = np.array([[m[0, 0] / fx, m[0, 1] / fy, m[0, 0] * x0 + m[0, 1] * y0 + m[0, 2]],
                           [m[1, 0] / fx, m[1, 1] / fy, m[1, 0] * x0 + m[1, 1] * y0 + m[1, 2]]])
            return cv2.warpAffine(small, m2, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def thumbnail_jpeg(crop: np.ndarray, size: int = 96, quality: int = 85) -> bytes:
    """A small JPEG of an aligned RGB crop, for the people list."""
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - imencode of a valid uint8 image does not fail
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
