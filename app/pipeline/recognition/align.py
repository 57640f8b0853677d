"""Cut a face out of a frame as the embedder expects it.

The FaceNet weights (20180408-102900) were trained and validated on MTCNN crops: MTCNN's
box, 16 px wider on every side (in a 250x250 picture), cut out and resized to 160x160
without keeping its aspect ratio, so the face is squeezed vertically by about 1.25. The
crop the embedder sees here reproduces that geometry from our own detector: BlazeFace's
box is square and sits lower than MTCNN's, so the MTCNN crop box is predicted from
BlazeFace's six keypoints by a linear map fitted to MTCNN's boxes on LFW photos that are
not in the benchmark's pairs. The crop is turned so the eyes are level (the box is
predicted in that frame too). On LFW View 2 (10-fold) this takes the accuracy from 97.7 %
(a square 1.2x BlazeFace's box) to 98.7 %, as good as MTCNN's own crop on the same photos
(98.6 %); every variant measured is in models/README.md, "Crop and alignment".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.pipeline.models import EMBEDDING_MEAN
from app.pipeline.types import Detection

CROP_SIZE = 160

#: Names the crop geometry, the preprocessing and the mean embedding subtracted
#: (`app.pipeline.recognition.embedder`) an embedding was computed with. Embeddings of different
#: versions must not be compared: a face enrolled under another version has to be
#: embedded again from its photo (faces of other versions are left out of recognition;
#: see `app.pipeline.recognition.recognizer`). Change it whenever the crop or the standardisation
#: changes; a new mean file changes it by itself.
EMBEDDING_VERSION = f"facenet512-20180408/mtcnn-box-v2/mean-{EMBEDDING_MEAN.sha256[:12]}"

#: The linear map from BlazeFace's keypoints to the MTCNN crop box (MTCNN's box plus
#: 12 px on each side in a 250x250 LFW photo, i.e. 24 px in all; chosen on held-out
#: pairs, see models/README.md). Rows are the features of `_features` (the keypoints in
#: the eye-level frame, in units of the detector box's width, and 1); columns are the
#: crop box's centre x, centre y, width and height in that frame. Least squares on the
#: 5532 LFW photos that are in none of View 2's pairs and where both detectors found the
#: same face; residual SD on the 7700 View 2 photos: 0.021 / 0.024 (centre), 0.040 / 0.063
#: (width / height) of the box width.
_BOX_FROM_KEYPOINTS = np.array([
    [-0.8322, -0.6194, 4.1793, 5.8248],    # right eye x
    [-0.9884, 0.9436, -4.8472, -6.2351],   # left eye x
    [0.2512, -0.2751, -2.1373, -6.5679],   # eyes y
    [-2.8393, 0.7021, -0.4911, -1.8230],   # nose tip x
    [0.9871, -1.9389, -0.6466, -0.6863],   # nose tip y
    [-0.0418, 0.6490, -3.3921, -4.1326],   # right ear x
    [-0.2467, -0.2672, 0.3501, 0.9852],    # right ear y
    [0.1229, -0.4925, 3.3630, 3.5798],     # left ear x
    [0.6129, -0.0067, -0.2948, -0.0339],   # left ear y
    [-0.0507, 0.1783, -0.2806, -0.4701],   # 1
])


def _frame(det: Detection) -> tuple[np.ndarray, float, float]:
    """The face's own frame: origin, unit length and angle (degrees) of its x axis.

    The origin is the centroid of the eyes, nose tip and mouth; the unit is the detector
    box's width; x runs along the eye line from the subject's right eye (image left) to
    their left eye.
    """
    kp = det.keypoints.astype(np.float64)
    width = det.raw_box[2] if det.raw_box[2] > 0 else det.box[2]
    eyes = kp[1] - kp[0]
    return kp[:4].mean(axis=0), float(width), math.degrees(math.atan2(eyes[1], eyes[0]))


def _features(det: Detection) -> np.ndarray:
    """The keypoints in the eye-level frame, as `_BOX_FROM_KEYPOINTS` expects them."""
    origin, unit, angle = _frame(det)
    a = math.radians(angle)
    to_frame = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    p = (det.keypoints.astype(np.float64) - origin) @ to_frame.T / unit
    # In this frame both eyes have the same y, so it is one feature.
    return np.array([p[0, 0], p[1, 0], p[0, 1], p[2, 0], p[2, 1],
                     p[4, 0], p[4, 1], p[5, 0], p[5, 1], 1.0])


def crop_box(det: Detection) -> tuple[float, float, float, float, float]:
    """The crop's box in the frame: centre x, centre y, width, height (pixels), angle (degrees)."""
    origin, unit, angle = _frame(det)
    fx, fy, w, h = _features(det) @ _BOX_FROM_KEYPOINTS
    a = math.radians(angle)
    cx = origin[0] + unit * (fx * math.cos(a) - fy * math.sin(a))
    cy = origin[1] + unit * (fx * math.sin(a) + fy * math.cos(a))
    # A degenerate detection must not give an empty or inverted box.
    return cx, cy, max(w, 0.2) * unit, max(h, 0.2) * unit, angle


def crop_transform(det: Detection, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 affine matrix mapping frame pixels to crop pixels.

    The box is turned by its angle and stretched to ``size`` x ``size`` (its aspect ratio
    is not kept, as in the crops the embedder was trained on).
    """
    cx, cy, w, h, angle = crop_box(det)
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    lin = np.diag([size / w, size / h]) @ np.array([[c, s], [-s, c]])
    shift = np.array([size / 2.0, size / 2.0]) - lin @ np.array([cx, cy])
    return np.hstack([lin, shift[:, None]])


def align_face(rgb: np.ndarray, det: Detection, size: int = CROP_SIZE) -> np.ndarray:
    """Return the aligned (size, size, 3) ``uint8`` crop of one face (see `warp`)."""
    return warp(rgb, crop_transform(det, size), size)


def warp(rgb: np.ndarray, m: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The (size, size, 3) ``uint8`` crop that the 2x3 affine *m* maps the frame to.

    A large face is first shrunk with area averaging so the crop does not alias; parts
    of the crop outside the frame are filled by replicating the border.
    """
    scale = max(math.hypot(m[0, 0], m[0, 1]), math.hypot(m[1, 0], m[1, 1]))
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
