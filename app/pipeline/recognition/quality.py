"""Is a face crop sharp enough to enroll? A motion-blur-aware sharpness measure.

Motion blur (a fast head turn, a shaking hand) smears the picture along one direction:
gradients *along* the motion vanish while those across it survive, so the variance of
the Laplacian, which adds up every direction, barely drops. `sharpness` instead takes
the weakest direction: the smaller eigenvalue of the face's gradient structure tensor
(the mean gradient energy in the direction where it is lowest), divided by the
intensity variance so that dim or low-contrast light does not count as blur.

It is measured on a square crop of the face, 1.2 times the detector's box, turned so
the eyes are level (`face_sharpness`), not on the embedder's crop: that one is
stretched (`app.pipeline.recognition.align`), which tips the balance between horizontal and
vertical gradients. On the same frames the square crop separates sharp from blurred
faces better (ROC AUC 0.987 against 0.978; at a cut-off that accepts every sharp frame,
78 % of the frames whose embedding the blur moved below cosine 0.85 of the sharp one
are refused, against 73 %).

`MIN_SHARPNESS` was measured on webcam-like frames made from the shared photos
(`blurred_frame` applies a straight motion-blur kernel; see README.md "Snapshot
quality" and tests/pipeline/test_quality.py, which re-measures it).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.pipeline.recognition.align import CROP_SIZE, warp
from app.pipeline.types import Detection

#: Enrollment refuses a face whose `face_sharpness` is below this. Measured on 66 shared
#: photos framed as a 640x480 webcam would (faces 110-260 px, JPEG): no sharp frame
#: scored below 0.70; a blur 15 % of the face height long scores below 0.6 in 99.7 %
#: of frames (it moves the embedding to cosine 0.42 of the sharp one, median).
MIN_SHARPNESS = 0.6
#: The square crop `face_sharpness` measures: this many times the detector's box.
SQUARE = 1.2
#: The crop's border (pixels of a 160 px crop) is left out: it is background, or
#: replicated pixels where the face touches the frame's edge.
_BORDER = 16


def sharpness(crop: np.ndarray) -> float:
    """Sharpness of an aligned RGB face crop in its weakest direction (0: flat or smeared).

    Parameters
    ----------
    crop : ndarray
        (H, W, 3) ``uint8`` RGB, normally the 160x160 aligned crop.

    Returns
    -------
    float
        The smaller eigenvalue of the mean gradient structure tensor of the crop's
        centre, over the centre's intensity variance.
    """
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = _BORDER if min(grey.shape) > 4 * _BORDER else 0
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)[b:grey.shape[0] - b, b:grey.shape[1] - b]
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)[b:grey.shape[0] - b, b:grey.shape[1] - b]
    inner = grey[b:grey.shape[0] - b, b:grey.shape[1] - b]
    variance = float(inner.var())
    if variance < 1.0:  # a flat patch: no detail at all
        return 0.0
    sxx, syy, sxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    weakest = (sxx + syy) / 2 - math.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    return max(0.0, weakest) / variance


def square_transform(det: Detection, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 affine matrix of a square crop `SQUARE` times the box, eyes level."""
    x, y, w, h = det.raw_box if det.raw_box[2] > 0 else det.box
    right_eye, left_eye = det.keypoints[0], det.keypoints[1]
    # The subject's right eye is on the image's left: this vector points right.
    angle = math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    cx, cy = x + w / 2.0, y + h / 2.0
    m: np.ndarray = cv2.getRotationMatrix2D((cx, cy), angle, size / (max(w, h) * SQUARE))
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    return m


def face_sharpness(rgb: np.ndarray, det: Detection) -> float:
    """`sharpness` of a detected face, on its square crop (see the module doc)."""
    return sharpness(warp(rgb, square_transform(det)))


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A straight motion-blur kernel: *length* pixels at *angle* degrees (0 = horizontal)."""
    length = max(1, int(length))
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    for t in np.linspace(-c, c, 4 * length):
        x = c + t * math.cos(math.radians(angle))
        y = c - t * math.sin(math.radians(angle))
        k[int(round(y)), int(round(x))] = 1.0
    out: np.ndarray = k / k.sum()
    return out


def blurred_frame(rgb: np.ndarray, length: int, angle: float) -> np.ndarray:
    """*rgb* as a camera moving *length* pixels at *angle* during the exposure sees it."""
    if length <= 1:
        return rgb.copy()
    out: np.ndarray = cv2.filter2D(rgb, -1, motion_kernel(length, angle),
                                   borderType=cv2.BORDER_REPLICATE)
    return out
