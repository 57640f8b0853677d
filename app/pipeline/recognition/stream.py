"""A stream's frames through the `Recognizer` on both cores, with the results in order.

`Stream` is the one loop that plays a source: the window's worker thread, ``facerec
watch`` and ``facerec bench`` all drive it. It owns the source and its decoding thread,
the pacing of a file, the live timeout, seeking, the tracker, the fps window, and
following the gallery (`GalleryFollower`) between frames. Underneath, a `StreamPipeline`
overlaps the stages of consecutive frames:

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
`finish` before anything else uses it (a settings change, an enrollment). Qt-free: the
window's worker adds only a thread, a queue of jobs and signals.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from app.pipeline.errors import FacerecError, SourceError
from app.pipeline.recognition.recognizer import FrameWork, Recognizer
from app.pipeline.recognition.sources import LatestFrameGrabber, ReadAhead, SourceSpec, VideoSource
from app.pipeline.recognition.tracking import FaceTracker
from app.pipeline.types import FrameResult

log = logging.getLogger(__name__)

#: A live source that delivers nothing for this long counts as lost.
LIVE_TIMEOUT_S = 5.0
#: Longest `Stream.read` waits on a live source before handing control back.
LIVE_POLL_S = 0.2
#: Longest `Stream.read` sleeps for a paced file's next frame (bounds how long a stop waits).
POLL_S = 0.05
#: Seconds between checks for changes another process or workstation made to the gallery
#: (one cheap local query; a shared gallery's mirror is kept current in the background).
REFRESH_S = 0.5


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



class GalleryFollower:
    """Follows the changes made to the gallery elsewhere, by the store's generation.

    Another facerec process (the CLI, a second window, another workstation) may enroll,
    rename or remove people while a stream plays. One cheap query tells whether the
    store moved on; the index then catches up with what changed (`Recognizer.refresh`).
    It also notices when a shared gallery goes away or comes back.

    Parameters
    ----------
    rec : Recognizer
        Nothing else may use it while `check` runs (no frame in flight).
    every_s : float
        Seconds between two checks (`due`).
    on_change : callable, optional
        Called after the index caught up with a change.
    on_offline : callable, optional
        Called with the epoch seconds a shared gallery went away, or None when it is back.
    """

    def __init__(self, rec: Recognizer, every_s: float = REFRESH_S, *,
                 on_change: Callable[[], None] | None = None,
                 on_offline: Callable[[float | None], None] | None = None) -> None:
        self.rec = rec
        self.every_s = every_s
        self.on_change = on_change
        self.on_offline = on_offline
        #: When the shared gallery went away (epoch seconds), None while it is reachable.
        self.offline_since: float | None = None
        self._checked_at = -float("inf")

    def due(self) -> bool:
        """True once *every_s* has passed since the last check."""
        return time.monotonic() - self._checked_at > self.every_s

    def check(self) -> bool:
        """Catch up with the store now; True if the gallery changed."""
        self._checked_at = time.monotonic()
        changed = False
        try:
            changed = self.rec.refresh()
        except FacerecError as exc:  # e.g. the store is locked for long: try again later
            log.warning("could not follow changes to the gallery: %s", exc)
        if changed and self.on_change is not None:
            self.on_change()
        since = self.rec.store.offline_since
        if since != self.offline_since:
            self.offline_since = since
            if self.on_offline is not None:
                self.on_offline(since)
        return changed


class Stream:
    """One source played through a `Recognizer`: the loop the window, ``watch`` and ``bench`` share.

    It owns the source and the thread that decodes it (a `LatestFrameGrabber` for a live
    source, a `ReadAhead` for a file), the pacing of a file at its own frame rate, the
    live timeout, seeking, the tracker and frame index (a `StreamPipeline`), the fps
    window, and following the gallery between frames. Every finished frame goes to
    *on_result*, in order, with its position as the tag: a file's frame number, or
    for a live source the number of frames processed since it opened.

    Parameters
    ----------
    rec : Recognizer
        Used by this stream alone while it plays (see `StreamPipeline`).
    source : SourceSpec, str, int or VideoSource
        What to play; an open source is taken over (the stream releases it).
    on_result : callable
        Receives each finished `Processed` frame, oldest first.
    width, height : int or None
        Resolution to ask a camera for.
    paced : bool
        Play a file at its own frame rate, skipping frames when processing falls behind,
        so it plays in real time like a camera (the window). Otherwise every frame of a
        file is processed, as fast as it can be (``watch``, ``bench``).
    start_at : int
        A file's first frame.
    live : bool, optional
        Play as a live source (newest frame only; no pausing or seeking) or as a file;
        by default as the source is (`VideoSource.is_live`). The benchmark plays a file
        delivered at a camera's rate as a camera.
    overlap : bool
        Run the next frame's detection while this frame's faces are embedded.
    follower : GalleryFollower, optional
        Checked between frames (with no frame in flight) whenever it is due.
    housekeeping : callable, optional
        Called between every two frames. A frame may be in flight: it may use the
        store (e.g. write the recognition log), not the recognizer's models or index.

    Raises
    ------
    SourceError
        If the source cannot be opened.
    """

    def __init__(self, rec: Recognizer, source: SourceSpec | str | int | VideoSource,
                 on_result: Callable[[Processed], None], *, width: int | None = None,
                 height: int | None = None, paced: bool = False, start_at: int = 0,
                 live: bool | None = None, overlap: bool = True, follower: GalleryFollower | None = None,
                 housekeeping: Callable[[], None] | None = None) -> None:
        self.rec = rec
        self.on_result = on_result
        self.follower = follower
        self.housekeeping = housekeeping
        src = (VideoSource(source, width, height) if isinstance(source, SourceSpec | str | int)
               else source)
        self.source = src
        self.spec: SourceSpec = src.spec
        #: Cameras and streams run in real time; they cannot pause or seek.
        self.live: bool = src.is_live if live is None else live
        #: The source's own frame rate.
        self.fps: float = src.fps
        #: Frames in a file (None for a live source, or a file that does not say).
        self.frame_count: int | None = None if self.live else src.frame_count
        self.paced = paced and not self.live
        self._overlap = overlap
        #: Frames of a file read so far (the next one's number); frames taken from a live source.
        self.position = 0
        #: Frames dropped: skipped to keep a paced file in time, or refused by `step`'s *wanted*.
        self.dropped = 0
        #: Frames processed since the stream opened.
        self.processed = 0
        #: True once a file has ended or a live source stopped delivering.
        self.ended = False
        self.paused = False
        self._play_start = self._last_frame_at = time.monotonic()
        if start_at > 0 and not self.live and src.seek(start_at):  # a stopped file resumes where it was
            self.position = src.frames_read
            self._play_start -= self.position / self.fps
        self._stamps: deque[float] = deque(maxlen=64)
        # From here on a thread of its own reads the source (and releases it).
        self._grabber = LatestFrameGrabber(src) if self.live else None
        self._reader = None if self.live else ReadAhead(src)
        self.tracker = FaceTracker()  # tracks belong to one stream
        self.pipe = StreamPipeline(rec, self.tracker, overlap=overlap)

    def describe(self) -> str:
        """A short label for the source."""
        return self.spec.describe()

    @property
    def decode_ms(self) -> list[float]:
        """Milliseconds each decoded frame of a file took (the reader thread's work)."""
        return list(self._reader.read_ms) if self._reader is not None else []

    # -- frames ------------------------------------------------------------------
    def read(self) -> np.ndarray | None:
        """The frame to process now; None if none is due yet, while paused, or at the end.

        A paced file waits at most `POLL_S` for its next frame; a live source at most
        `LIVE_POLL_S`. `ended` tells the end from a frame not due yet.

        Raises
        ------
        SourceError
            When a live source delivers nothing for `LIVE_TIMEOUT_S`, or fails.
        """
        if self.ended or self.paused:
            return None
        if self._grabber is not None:
            t0 = time.monotonic()
            try:
                frame = self._grabber.latest(timeout=LIVE_POLL_S)
            except SourceError:
                # A timeout (nothing new yet) is not a loss unless it lasts; an error the
                # grabber hit returns at once and is re-raised.
                if time.monotonic() - t0 < LIVE_POLL_S * 0.9:
                    raise
                if time.monotonic() - self._last_frame_at > LIVE_TIMEOUT_S:
                    raise SourceError(f"{self.describe()}: no frame for {LIVE_TIMEOUT_S:.0f} s") from None
                return None
            if frame is None:
                self.ended = True
                return None
            self._last_frame_at = time.monotonic()
            self.position += 1
            return frame
        reader = self._reader
        assert reader is not None
        if self.paced:
            # Frame n is due at start + n / fps. When processing falls behind, skip the
            # frames whose successor is already due, so the file plays in real time.
            now = time.monotonic()
            due = self._play_start + self.position / self.fps
            if due > now:
                time.sleep(min(due - now, POLL_S))
                return None
            target = int((now - self._play_start) * self.fps)
            if target - self.position > 2 * self.fps:  # far behind (e.g. a long job): resync
                self._play_start = now - self.position / self.fps
                target = self.position
            while self.position < target:
                if reader.read() is None:
                    self.ended = True
                    return None
                self.position += 1
                self.dropped += 1
        frame = reader.read()
        if frame is None:
            self.ended = True
            return None
        self.position += 1
        return frame

    def frame_waiting(self) -> bool:
        """True if the next frame can be read at once (then the pipeline overlaps)."""
        if self._grabber is not None:
            return self._grabber.has_new()
        if self.ended or self.paused:
            return False
        if not self.paced:  # every frame of the file, as fast as it decodes
            return True
        return self._play_start + self.position / self.fps <= time.monotonic()

    def push(self, frame: np.ndarray) -> None:
        """Start on *frame* (the one `read` returned); finished frames go to *on_result*."""
        tag = self.pipe.index + 1 if self.live else self.position - 1
        self._deliver(self.pipe.push(frame, tag))

    def finish(self) -> None:
        """Finish the frame in flight (to *on_result*), so nothing runs on the recognizer."""
        self._deliver(self.pipe.finish())

    def between_frames(self) -> None:
        """Follow the gallery when it is due (nothing in flight), then run the housekeeping."""
        if self.follower is not None and self.follower.due():
            self.finish()
            self.follower.check()
        if self.housekeeping is not None:
            self.housekeeping()

    def step(self, wanted: Callable[[], bool] | None = None) -> bool:
        """Read the frame due now, if any, and process it; False once the source has ended.

        Parameters
        ----------
        wanted : callable, optional
            Asked once a frame is read: whether anyone will take its result now. If not,
            the frame is dropped (counted in `dropped`) and the frame in flight is
            finished, so the newest result is ready the moment the consumer is free.

        Returns
        -------
        bool
            False at the end, after the last frame went to *on_result*.
        """
        frame = self.read()
        if frame is None:
            if self.ended:
                self.finish()
                return False
            return True
        self.between_frames()
        if wanted is not None and not wanted():
            self.dropped += 1
            self.finish()
            return True
        self.push(frame)
        if not self.frame_waiting():
            self.finish()  # nothing else to do: this frame's result is due now
        return True

    def run(self, max_frames: int | None = None) -> int:
        """Play to the end, or until *max_frames* were processed; every result reported.

        Returns
        -------
        int
            Frames processed.
        """
        while (max_frames is None or self.pipe.index < max_frames) and self.step():
            pass
        self.finish()
        return self.pipe.index

    def still(self) -> list[Processed]:
        """Read the next frame and finish it at once, returned instead of reported.

        For a paused file after a seek: the frame is shown, but it is not a moment that
        passed (the recognition log does not count it).
        """
        self.finish()
        if self._reader is None:
            return []
        frame = self._reader.read()
        if frame is None:
            return []
        self.position += 1
        done = self.pipe.push(frame, self.position - 1) + self.pipe.finish()
        for p in done:
            self._count(p)
        return done

    def _deliver(self, done: list[Processed]) -> None:
        for p in done:
            self._count(p)
            self.on_result(p)

    def _count(self, p: Processed) -> None:
        self.processed += 1
        self._stamps.append(time.monotonic())
        if self.processed % 100 == 0:
            log.info("%.1f fps, %.0f ms per frame, %d dropped", self.fps_now(),
                     p.result.timings.get("total", 0.0), self.dropped)

    def fps_now(self) -> float:
        """Frames processed per second over the last two seconds."""
        stamps = self._stamps
        if len(stamps) < 2:
            return 0.0
        while len(stamps) > 2 and stamps[-1] - stamps[0] > 2.0:
            stamps.popleft()
        span = stamps[-1] - stamps[0]
        return (len(stamps) - 1) / span if span > 0 else 0.0

    # -- a file: pause and seek ------------------------------------------------------
    def pause(self, paused: bool) -> bool:
        """Hold a file on its current frame, or play on; False if nothing changed (or live)."""
        if self.live or paused == self.paused:
            return False
        self.paused = paused
        if not paused:  # pace on from here, not from where the file was paused
            self._play_start = time.monotonic() - self.position / self.fps
        return True

    def seek(self, frame: int) -> bool:
        """Make frame *frame* of a file the next one read; False if it cannot (or live).

        The frame in flight belongs to another moment: it is dropped, and so are the
        tracks (the faces of another moment).
        """
        if self._reader is None:
            return False
        # The file is decoded ahead on the reader's thread, which alone may touch its
        # capture: open the file again at *frame* and give it a new reader.
        try:
            source = VideoSource(self.spec)
        except SourceError as exc:
            log.warning("cannot seek %s: %s", self.describe(), exc)
            return False
        if not source.seek(frame):
            source.close()
            return False
        self.pipe.close()
        self._reader.close()
        self.source, self._reader = source, ReadAhead(source)
        self.position = frame if source.frame_count is None else min(frame, source.frame_count - 1)
        self._play_start = time.monotonic() - self.position / self.fps
        self.ended = False
        self.tracker.reset()
        self.pipe = StreamPipeline(self.rec, self.tracker, overlap=self._overlap)
        return True

    def close(self) -> None:
        """Drop the frame in flight and release the source (idempotent)."""
        self.pipe.close()
        # The reader thread releases the source as it ends.
        if self._grabber is not None:
            self._grabber.close()
        elif self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
