"""A stream's frames through the `Recognizer` on both cores, with the results in order.

`Recognizer.process` runs three stages one after the other: `find` (detection), `follow`
(scene cut, association, which faces to embed) and `name_faces` (second look at small
faces, crop, embedding, search and decision, the tracks' votes). `StreamPipeline` runs
`find` for frame *n* on the caller's thread while `name_faces` for frame *n - 1* runs on
a helper thread; `follow` for frame *n* waits for that, because it reads what the votes
decided. The tracker sees exactly the same sequence of calls as when the frames
are processed one by one, so the results are the same, frame for frame (a test checks).
Meanwhile the frames themselves are decoded on a third thread (`sources.ReadAhead` and
`sources.LatestFrameGrabber`).

What overlaps is the detection of the next frame and the per-face work of this one
(refine, crop, embed: the part that grows with the faces that need an embedding), so a
heavier per-face step costs the frame rate only where it exceeds one frame's detection.

The pipeline is the only user of its `Recognizer` while frames are in flight: call
`finish` before anything else uses it (a settings change, an enrollment).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from app.pipeline.recognizer import FrameWork, Recognizer
from app.pipeline.sources import LatestFrameGrabber, ReadAhead
from app.pipeline.tracking import FaceTracker
from app.pipeline.types import FrameResult

log = logging.getLogger(__name__)


class Processed(NamedTuple):
    """A frame, what was found in it, and the tag it was pushed with."""

    frame: np.ndarray
    result: FrameResult
    tag: Any = None


class StreamPipeline:
    """Frames of one stream, processed with the next frame's detection overlapping.

    Parameters
    ----------
    rec : Recognizer
        Used by this pipeline alone while frames are in flight.
    tracker : FaceTracker or None
        The stream's tracker (a new one if None).
    overlap : bool
        Run the next frame's detection while this frame's faces are embedded. Without
        it every frame is finished before `push` returns (one core for the stages).
    """

    def __init__(self, rec: Recognizer, tracker: FaceTracker | None = None, *,
                 overlap: bool = True) -> None:
        self.rec = rec
        self.tracker = tracker if tracker is not None else FaceTracker()
        #: Index of the next frame pushed.
        self.index = 0
        self._pool: ThreadPoolExecutor | None = None
        if overlap:
            rec.use_two_detectors()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="name-faces")
        self._inflight: tuple[np.ndarray, Future[FrameResult], Any] | None = None

    @property
    def busy(self) -> bool:
        """True while a frame is in flight (pushed, and not yet returned)."""
        return self._inflight is not None

    def push(self, frame: np.ndarray, tag: Any = None) -> list[Processed]:
        """Start on *frame*; return the frames finished meanwhile, oldest first.

        With overlap that is the previous frame (if any), and *frame* stays in flight
        until the next `push` or `finish`; without, it is *frame* itself. *tag* comes
        back with the frame (e.g. its position in a file).
        """
        work = self.rec.find(frame, self.index, self.tracker)  # overlaps the frame in flight
        done = self.finish()
        self.rec.follow(work, self.tracker)
        self.index += 1
        if self._pool is None:
            return [*done, Processed(frame, self._name_faces(work), tag)]
        self._inflight = (frame, self._pool.submit(self._name_faces, work), tag)
        return done

    def _name_faces(self, work: FrameWork) -> FrameResult:
        return self.rec.name_faces(work, self.tracker)

    def finish(self) -> list[Processed]:
        """Wait for the frame in flight; [] if there is none. Re-raises its error."""
        if self._inflight is None:
            return []
        frame, future, tag = self._inflight
        self._inflight = None
        return [Processed(frame, future.result(), tag)]

    def close(self) -> None:
        """Wait for the frame in flight (its result is dropped) and stop the helper thread."""
        try:
            self.finish()
        except Exception:  # the caller is closing; the frame's error no longer matters
            log.debug("dropped the failure of the last frame in flight", exc_info=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> StreamPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_stream(rec: Recognizer, reader: LatestFrameGrabber | ReadAhead,
               on_result: Callable[[Processed], None], *, max_frames: int | None = None,
               tracker: FaceTracker | None = None, overlap: bool = True,
               housekeeping: Callable[[], None] | None = None, every_s: float = 0.5) -> int:
    """Process every frame a reader delivers, reporting each result in order.

    A file (`ReadAhead`) is processed frame by frame, the next frame's detection
    overlapping this one's embeddings. A live source (`LatestFrameGrabber`) gives the
    newest frame each time; a frame is finished at once when no newer one is waiting,
    so its result is not held back until the next frame arrives.

    *housekeeping* (following changes to the gallery, writing the log) is called every
    *every_s* seconds between frames, with no frame in flight: it may use *rec*.

    Returns
    -------
    int
        Frames processed.
    """
    next_check = 0.0
    with StreamPipeline(rec, tracker, overlap=overlap) as pipe:
        while max_frames is None or pipe.index < max_frames:
            frame = reader.latest() if isinstance(reader, LatestFrameGrabber) else reader.read()
            if frame is None:
                break
            if housekeeping is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + every_s
                for p in pipe.finish():
                    on_result(p)
                housekeeping()
            for p in pipe.push(frame):
                on_result(p)
            if isinstance(reader, LatestFrameGrabber) and not reader.has_new():
                for p in pipe.finish():
                    on_result(p)
        for p in pipe.finish():
            on_result(p)
        return pipe.index
