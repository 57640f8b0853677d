"""Face detection with MediaPipe Tasks (BlazeFace short-range), plus tiling for small faces.

BlazeFace short-range sees the frame at 128x128, so it finds faces that fill a good part
of the picture (a webcam sitter) but misses a face 40 px high in a 1080p scene: that is
under 3 px at model scale. Running the same model on square tiles of the frame brings
small faces up to a size it detects; `TilePlan` lays the tiles out over a few scales.
A photo gets every tile. On a live stream a tile is scanned where a new face may have
appeared (see `scan`), and a region around a small tracked face in every frame in which
the whole-frame pass does not find it (see `tracking`).

A pass that sees a face small also places it coarsely, and FaceNet is sensitive to the
crop, so a small face is detected once more in a region around it before it is embedded
(`FaceDetector.refine`).
"""

from __future__ import annotations

import atexit
import logging
import math
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelError
from app.pipeline.models import DETECTOR, verified_model
from app.pipeline.native import quiet_native_stderr
from app.pipeline.types import Detection

log = logging.getLogger(__name__)

#: A square region of a frame: (x0, y0, side) in pixels.
Region = tuple[int, int, int]

#: Smallest face (pixels high) the tile scan is laid out to find.
MIN_FACE_PX = 40
#: A tile this many times the smallest face brings it to ~20 px at model scale, where
#: BlazeFace short-range detects reliably (measured: 40 px faces found at tile 256 and
#: 320, missed at 384).
TILE_PER_FACE = 6.4
#: Each coarser tile level is this much larger than the one before.
LEVEL_STEP = 2.5
#: A tile reports faces up to this fraction of its side (a coarser level sees larger ones
#: whole).
MAX_FACE_PER_TILE = 0.5
#: Neighbouring tiles overlap by this fraction so that a face is whole in at least one:
#: more than the largest face a level alone must find (the next level's smallest,
#: TILE_PER_FACE / LEVEL_STEP = 0.39 of a tile) plus the edge margins.
TILE_OVERLAP = 0.45
#: The whole-frame pass finds nearly every face taller than this fraction of the frame's
#: longer side (on the shared faces in a 720p frame: 4/40 at 100 px, 38/40 at 140 px,
#: 40/40 from 170 px).
WHOLE_FRAME_FINDS = 0.13
#: Tiles give the model many more chances to see a face in clutter. On the shared
#: photos every tile-only detection scoring under 0.75 was a false positive (18 of
#: them, 0.50-0.74), while real 40 px faces scored 0.78-0.94; tiles use this floor.
TILE_MIN_CONFIDENCE = 0.75
#: The whole-frame pass places the box and keypoints of a face shorter than this fraction
#: of the frame's longer side too coarsely to embed: on 16 shared faces pasted into a
#: 720p frame, the embedding's cosine to the original photo's was 0.81 at 140 px (worst
#: 0.38) and 0.94-0.98 at 180-240 px (worst 0.71), and 0.98 at every size from 90 px
#: (worst 0.94) when the detector was run again on a square around the face
#: (`FaceDetector.refine`). (Measured with the current crop and centring; the former
#: crop gave 0.82, 0.95 and 0.98.)
REFINE_BELOW = 0.25
#: `FaceDetector.refine` looks again in a square this many times the face's height
#: (measured: 2.5x and 3.2x gave the same 0.976-0.978, 4.5x 0.967-0.969).
REFINE_REGION_PER_FACE = 2.8


_live: weakref.WeakSet[FaceDetector] = weakref.WeakSet()
#: Detections still run with stderr captured (see `FaceDetector._run`).
_quiet_calls_left = 500


@atexit.register
def _close_live_detectors() -> None:
    """Close detectors still open at exit: MediaPipe's own finaliser fails at shutdown."""
    for det in list(_live):
        det.close()


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
            # Filtering happens here, so the threshold can change without a reload.
            min_detection_confidence=0.3,
            min_suppression_threshold=0.3,
        )
        try:
            with quiet_native_stderr():
                self._mp = _MPFaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load the face detector {path}: {exc}") from None
        _live.add(self)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in a whole RGB ``uint8`` (H, W, 3) frame, largest first.

        One pass over the whole frame finds faces taller than about an eighth of the
        frame's longer side (`WHOLE_FRAME_FINDS`); `detect_regions` finds smaller ones.
        """
        h, w = rgb.shape[:2]
        return sorted(self._run(rgb, 0, 0, w, h), key=lambda d: d.area, reverse=True)

    def detect_regions(self, rgb: np.ndarray, regions: Sequence[Region]) -> list[Detection]:
        """Detect faces inside square regions (tiles) of a frame, in frame coordinates.

        A detection touching a region's inner edge is dropped (the tile cuts the face;
        an overlapping tile sees it whole), and so is one taller than half the region
        (a coarser level sees it whole). Tiles use a higher score floor,
        `TILE_MIN_CONFIDENCE`.
        """
        h, w = rgb.shape[:2]
        out = []
        for x0, y0, side in regions:
            x1, y1 = min(w, x0 + side), min(h, y0 + side)
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            edge = 0.02 * side
            for d in self._run(rgb[y0:y1, x0:x1], x0, y0, w, h):
                bx, by, bw, bh = d.raw_box
                if d.score < TILE_MIN_CONFIDENCE or bh > MAX_FACE_PER_TILE * side:
                    continue
                if ((x0 > 0 and bx - edge < x0) or (y0 > 0 and by - edge < y0)
                        or (x1 < w and bx + bw + edge > x1) or (y1 < h and by + bh + edge > y1)):
                    continue
                out.append(d)
        return out

    def refine(self, rgb: np.ndarray, det: Detection) -> Detection:
        """Locate a face again, precisely, if the pass that found it saw it small.

        A face under `REFINE_BELOW` of the frame's longer side is detected again in a
        square `REFINE_REGION_PER_FACE` times its height around it, where the model sees
        it large; the new detection replaces it (kept as is if the second look misses).
        Call it on the faces about to be embedded: it costs one detector run each.
        """
        h, w = rgb.shape[:2]
        box = det.raw_box if det.raw_box[3] > 0 else det.box
        if box[3] >= REFINE_BELOW * max(w, h):
            return det
        x0, y0, side = square_around(box, max(32, round(box[3] * REFINE_REGION_PER_FACE)), w, h)
        again = [d for d in self._run(rgb[y0:y0 + side, x0:x0 + side], x0, y0, w, h)
                 if iou(d.box, det.box) > 0.3]
        return max(again, key=lambda d: iou(d.box, det.box)) if again else det

    def _run(self, img: np.ndarray, ox: int, oy: int, fw: int, fh: int) -> list[Detection]:
        """Run the model on *img*, located at (ox, oy) in a frame of size (fw, fh)."""
        import mediapipe as mp

        h, w = img.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
        global _quiet_calls_left
        if _quiet_calls_left > 0:
            # MediaPipe logs a once-per-process warning (input tensor alignment) on
            # whichever early detection first meets a misaligned buffer: capture stderr
            # until it has shown up (or for a bounded number of calls).
            with quiet_native_stderr() as seen:
                result = self._mp.detect(image)
            _quiet_calls_left = 0 if b"not aligned" in seen.chatter else _quiet_calls_left - 1
        else:
            result = self._mp.detect(image)
        out = []
        for d in result.detections:
            score = float(d.categories[0].score) if d.categories else 0.0
            if score < self.min_confidence:
                continue
            bb = d.bounding_box
            bw, bh = float(bb.width), float(bb.height)
            kps = np.array([[k.x * w, k.y * h] for k in d.keypoints], dtype=np.float32)
            bx, by = _unclamp(float(bb.origin_x), float(bb.origin_y), bw, bh, kps)
            rx, ry = bx + ox, by + oy
            x0, y0 = max(0, int(rx)), max(0, int(ry))
            x1, y1 = min(fw, int(rx + bw)), min(fh, int(ry + bh))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            kps += np.array([ox, oy], dtype=np.float32)
            out.append(Detection((x0, y0, x1 - x0, y1 - y0), kps.reshape(-1, 2), score,
                                 (rx, ry, bw, bh)))
        return out

    def close(self) -> None:
        """Release the native graph."""
        mp_det, self._mp = getattr(self, "_mp", None), None
        if mp_det is not None:
            with quiet_native_stderr():
                mp_det.close()


#: Where the box centre sits relative to the centroid of eyes, nose and mouth, as a
#: fraction of the box size (median over the 71 whole faces of the shared photos).
_CENTRE_FROM_KEYPOINTS = (0.0, 0.053)


def _unclamp(x: float, y: float, w: float, h: float, kps: np.ndarray) -> tuple[float, float]:
    """Undo MediaPipe's clamping of a box cut by the left or top edge.

    For such a face the Tasks API reports ``origin_x = 0`` (or ``origin_y = 0``) but keeps
    the full width, so the box is shifted into the picture. The keypoints are not
    clamped; the box is put back where they say the face is.
    """
    if x == 0.0 or y == 0.0:
        cx, cy = kps[:4].mean(axis=0)
        if x == 0.0:
            x = min(0.0, float(cx) + _CENTRE_FROM_KEYPOINTS[0] * w - w / 2)
        if y == 0.0:
            y = min(0.0, float(cy) + _CENTRE_FROM_KEYPOINTS[1] * h - h / 2)
    return x, y


class TilePlan:
    """Overlapping square tiles over a frame, at a few scales, fine to coarse.

    The finest level's tile is `TILE_PER_FACE` times the smallest face sought; each
    coarser level is `LEVEL_STEP` times larger, until a tile would span the frame
    (which the whole-frame pass already covers), plus one last level no taller than the
    frame when faces too large for the tiles are still too small for the whole frame.

    Parameters
    ----------
    width, height : int
        Frame size.
    min_face : int
        Smallest face height to find, in pixels.
    """

    @classmethod
    def for_still(cls, width: int, height: int) -> TilePlan:
        """A plan for a photo: faces below 1/40 of its short side are not sought.

        A 4600x3060 photo would otherwise need ~470 tiles (0.6 s); a face that small
        in a photo that large is not one a user means to identify.
        """
        return cls(width, height, max(MIN_FACE_PX, round(min(width, height) / 40)))

    def __init__(self, width: int, height: int, min_face: int = MIN_FACE_PX) -> None:
        self.size = (width, height)
        self.regions: list[Region] = []
        short, long = min(width, height), max(width, height)
        sides = []
        side = round(min_face * TILE_PER_FACE)
        while side < 0.8 * short:
            sides.append(side)
            side = round(side * LEVEL_STEP)
        if sides and sides[-1] * MAX_FACE_PER_TILE < WHOLE_FRAME_FINDS * long:
            # The coarsest level stops short of what the whole-frame pass finds (a 720p
            # frame: 256 px tiles hold faces up to 128 px, the whole frame finds them from
            # ~165 px); one more level, at most as tall as the frame, closes the gap.
            sides.append(min(short, round(sides[-1] * LEVEL_STEP)))
        for side in sides:
            stride = max(1, round(side * (1 - TILE_OVERLAP)))
            for y in _starts(height, side, stride):
                for x in _starts(width, side, stride):
                    self.regions.append((x, y, side))


def _starts(length: int, side: int, stride: int) -> list[int]:
    """Tile origins covering [0, length) with the last tile flush to the end."""
    if side >= length:
        return [0]
    n = math.ceil((length - side) / stride) + 1
    return [min(i * stride, length - side) for i in range(n)]


def square_around(box: tuple[float, float, float, float], side: int, width: int,
                  height: int) -> Region:
    """A square region of about *side* centred on *box*, moved (and shrunk) into the frame."""
    x, y, w, h = box
    side = min(width, height, side)
    x0 = int(min(max(0.0, x + w / 2 - side / 2), width - side))
    y0 = int(min(max(0.0, y + h / 2 - side / 2), height - side))
    return x0, y0, side


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def merge_detections(dets: Sequence[Detection], overlap: float = 0.3,
                     first: Sequence[Detection] = ()) -> list[Detection]:
    """Non-maximum suppression across passes: one detection per face, largest first.

    Two detections are the same face when their IoU exceeds *overlap* or one box lies
    mostly inside the other; the higher-scoring one is kept, except that detections in
    *first* are kept before any of *dets* is considered.
    """
    kept: list[Detection] = list(first)
    for d in sorted(dets, key=lambda d: d.score, reverse=True):
        if all(iou(d.box, k.box) <= overlap and _inside(d.box, k.box) < 0.6 for k in kept):
            kept.append(d)
    kept.sort(key=lambda d: d.area, reverse=True)
    return kept


def _inside(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Fraction of the smaller box's area that lies inside the other box."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    small = min(a[2] * a[3], b[2] * b[3])
    return ix * iy / small if small > 0 else 0.0
