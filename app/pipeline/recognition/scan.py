"""Where a stream looks for faces that the whole-frame pass cannot see.

The tile scan (`detector.TilePlan`) finds faces down to `detector.MIN_FACE_PX`, at one
detector run (~1.5 ms) per tile: 12 tiles in a 640x480 frame, 51 in 720p, 106 in 1080p.
Scanning four of them on every frame, round robin, cost 6 ms a frame even for a webcam
that shows one sitter and nothing else. A new face cannot appear where the picture did
not change, so `TileScheduler` scans a tile

- when it has never been scanned (the stream started, or the picture cut to another
  scene): up to ``tiles_per_frame`` a frame, in plan order, as fast as the round robin;
- when the picture inside it changed since its last scan, away from the faces already
  tracked: at most once every `RESCAN_AFTER` frames;
- when it changed only near a tracked face (within `TRACK_MASK` times its box: that is
  mostly the face's own motion, of head, hair and shoulders, but a small face may appear
  there too, e.g. a person far behind a webcam's sitter): once every `NEAR_RESCAN` frames;
- and, whatever happened, once every `SWEEP_FRAMES` frames at least, for a change too
  faint to notice.
The last two share one tile a frame, so a stream that shows only tracked faces moving
costs the whole-frame pass plus at most one tile a frame.

The change test works on a small grey image of the frame, one value per `CELL` x `CELL`
pixels, made by a bilinear resize (0.02 ms at 640x480, 0.08 ms at 1080p, against 0.3 and
2.6 ms for an area average). The tracker takes its scene-cut thumbnail from the same image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from app.pipeline.recognition.detector import MIN_FACE_PX, Region, TilePlan
from app.pipeline.types import Detection

#: Side of a change cell, in pixels: the smallest face sought covers 5 x 5 cells.
CELL = MIN_FACE_PX // 5
#: A cell has changed when its grey level moved this far from the value it had at its
#: last change. Each cell is a bilinear sample of 2 x 2 pixels: camera noise of 3 grey
#: levels moves it by ~2; a face that appears moves its cells by tens of levels.
CELL_CHANGE = 12
#: A tile has changed when this many cell changes happened inside it since its scan: a
#: single noisy cell does not count; the smallest face that appears changes ~25 cells.
MIN_CHANGED_CELLS = 4
#: A changed tile is scanned again at most this often (frames): while a person walks
#: through a tile it is scanned five times a second at 30 fps, not on every frame.
RESCAN_AFTER = 6
#: Changes within a square this many times a tracked face's box (centred on it) are
#: mostly its own motion...
TRACK_MASK = 2.5
#: ...so a tile that changed only there is scanned again at most this often (2 s at 30
#: fps), one such tile a frame. A webcam sitter moves all the time, so this is what a
#: camera pointed at one person pays for tiles: at 30 frames (with one tile a frame at
#: most, every 36-45 frames in fact on the bench's 720p videos) 1.04 tiles a frame, at 60
#: 0.75-0.81 (0.5 ms of CPU a frame less). The price: a small face that appears right
#: beside a tracked one, without first changing the picture away from it, is found
#: within 2 s instead of 1.2-1.5 s. A face that appears elsewhere is found as before.
NEAR_RESCAN = 60
#: Every tile is scanned at least once in this many frames (3 s at 30 fps).
SWEEP_FRAMES = 90

_NEVER = -(10**9)


def frame_cells(rgb: np.ndarray) -> np.ndarray:
    """The frame as a small grey ``uint8`` image, one value per `CELL` x `CELL` pixels."""
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, w // CELL), max(1, h // CELL)), interpolation=cv2.INTER_LINEAR)
    out: np.ndarray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return out


def _cell_span(start: float, length: float, cells: int) -> tuple[int, int]:
    """The cells [c0, c1) that pixels [start, start + length) fall in."""
    c0 = int(min(max(0.0, start // CELL), cells))
    c1 = int(min(max(0.0, -(-(start + length) // CELL)), cells))
    return c0, c1


class TileScheduler:
    """Choose the tiles of a stream's frame to scan for new small faces (module doc).

    Parameters
    ----------
    width, height : int
        Frame size.
    """

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self.plan = TilePlan(width, height)
        self.regions = self.plan.regions
        n = len(self.regions)
        self._scanned_at = np.full(n, _NEVER, dtype=np.int64)
        self._changes = np.zeros(n, dtype=np.int64)  # cell changes away from tracked faces
        self._near = np.zeros(n, dtype=np.int64)  # cell changes near tracked faces
        self._ref: np.ndarray | None = None
        self._frame = 0
        #: Whether the last frame `take` saw changed away from the tracked faces.
        self.changed_away = True
        gw, gh = max(1, width // CELL), max(1, height // CELL)
        spans = [(*_cell_span(x, s, gw), *_cell_span(y, s, gh)) for x, y, s in self.regions]
        self._span = np.array(spans, dtype=np.intp).reshape(-1, 4)  # cx0, cx1, cy0, cy1

    def reset(self) -> None:
        """Forget every scan (a scene cut): each tile is new again."""
        self._scanned_at[:] = _NEVER
        self._changes[:] = 0
        self._near[:] = 0

    def _per_tile(self, changed: np.ndarray) -> np.ndarray:
        """How many of the *changed* cells each tile holds."""
        integral = np.asarray(cv2.integral(changed.view(np.uint8)), dtype=np.int64)
        x0, x1, y0, y1 = self._span.T
        counts: np.ndarray = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return counts

    def _count_changes(self, cells: np.ndarray, tracked: Sequence[Detection]) -> None:
        """Add this frame's cell changes to each tile's counts, apart near tracked faces."""
        ref = self._ref
        self.changed_away = True
        if ref is None or ref.shape != cells.shape:
            self._ref = cells.copy()
            return
        changed = cv2.absdiff(cells, ref) > CELL_CHANGE
        self.changed_away = False
        if not changed.any():
            return
        ref[changed] = cells[changed]
        near = np.zeros_like(changed)
        gh, gw = cells.shape
        for det in tracked:
            x, y, w, h = det.raw_box if det.raw_box[3] > 0 else det.box
            side = max(w, h) * TRACK_MASK
            cx0, cx1 = _cell_span(x + w / 2 - side / 2, side, gw)
            cy0, cy1 = _cell_span(y + h / 2 - side / 2, side, gh)
            near[cy0:cy1, cx0:cx1] = changed[cy0:cy1, cx0:cx1]
            changed[cy0:cy1, cx0:cx1] = False
        if changed.any():
            self.changed_away = True
            self._changes += self._per_tile(changed)
        if near.any():
            self._near += self._per_tile(near)

    def take(self, cells: np.ndarray, tracked: Sequence[Detection], budget: int) -> list[Region]:
        """The tiles to scan in this frame, at most *budget* of them.

        Parameters
        ----------
        cells : ndarray
            `frame_cells` of this frame.
        tracked : sequence of Detection
            Where the faces being tracked were last seen.
        budget : int
            Most tiles to scan in this frame.
        """
        self._count_changes(cells, tracked)
        frame, self._frame = self._frame, self._frame + 1
        if budget <= 0 or not self.regions:
            return []
        never = self._scanned_at == _NEVER
        age = frame - self._scanned_at
        picked = [int(i) for i in np.flatnonzero(never)[:budget]]
        if len(picked) < budget:
            changed = np.flatnonzero(~never & (self._changes >= MIN_CHANGED_CELLS)
                                     & (age >= RESCAN_AFTER))
            oldest_first = changed[np.argsort(-age[changed], kind="stable")]
            picked += [int(i) for i in oldest_first[:budget - len(picked)]]
        if len(picked) < budget:
            # One more tile at most: changed only near a tracked face, else just stale.
            for due in (~never & (self._near >= MIN_CHANGED_CELLS) & (age >= NEAR_RESCAN),
                        ~never & (age >= SWEEP_FRAMES)):
                due[picked] = False
                if due.any():
                    picked.append(int(np.argmax(np.where(due, age, -1))))
                    break
        idx = np.array(picked, dtype=np.intp)
        self._scanned_at[idx] = frame
        self._changes[idx] = 0
        self._near[idx] = 0
        return [self.regions[i] for i in idx]
