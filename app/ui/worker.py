"""The pipeline worker: one thread that owns the camera and the `Recognizer`.

Threading model
---------------
`PipelineWorker` is a `QThread` whose `run()` builds the `Recognizer` *in the worker
thread* and keeps it for the whole life of the app. The recognizer is not thread-safe,
so nothing else ever touches it: the GUI thread sends work (open a source, check a
snapshot, enroll, rename, delete, apply settings) through a thread-safe
`queue.SimpleQueue` of jobs, and the worker runs them between frames, or, when no
source is playing, while it waits on that queue. Each job answers through a `Reply`
(a `QObject` living in the GUI thread), so its signals reach the GUI as queued calls.

Frames are dropped, never queued. At most one `FramePayload` is in flight: the worker
sets ``_gui_busy`` when it emits one, and the GUI calls `frame_shown` once it has
painted it. A frame read while the GUI is still busy is thrown away, so Qt's event
queue never fills up and the picture on screen is always the newest. Live sources are
read through a `LatestFrameGrabber`, which itself keeps only the newest frame; video
files are decoded ahead by a `ReadAhead` and paced at their native frame rate, skipping
frames when processing is slower, so a file plays in real time like a camera.

Frames go through a `StreamPipeline`: when the next frame is already waiting, its
detection runs on one core while this frame's faces are embedded on the other, and the
results still come out in order. When no frame is waiting (the usual case: a camera
delivers 30 frames a second) each frame is finished at once, so nothing waits for the
next frame to be shown. A finished frame that the GUI is too busy to take is kept until
it is free, unless a newer one finishes first. The pipeline is drained before any job
runs and before the gallery is followed, so those see the recognizer idle.

Methods on a `QThread` subclass run in the *caller's* thread: everything public here
only sets an `Event` or puts a job on the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from app.config import Paths, Settings
from app.pipeline.appearances import AppearanceLog, prune
from app.pipeline.errors import FacerecError, SourceError, StoreError
from app.pipeline.sources import LatestFrameGrabber, ReadAhead, SourceSpec, VideoSource, list_cameras
from app.pipeline.tracking import FaceTracker

if TYPE_CHECKING:
    from app.pipeline.recognizer import Recognizer
    from app.pipeline.store import Sighting
    from app.pipeline.stream import Processed, StreamPipeline
    from app.pipeline.types import FrameResult

log = logging.getLogger(__name__)

#: If the GUI has not acknowledged a frame for this long, assume the payload was lost
#: (e.g. its receiver was deleted) and emit again rather than stall forever.
GUI_ACK_TIMEOUT_S = 1.0
#: How long queued jobs may run between two frames before a frame is processed.
JOB_BUDGET_S = 0.08
#: A live source that delivers nothing for this long counts as lost.
LIVE_TIMEOUT_S = 5.0
#: Poll interval of the idle loop and of short waits (bounds how long `stop` takes).
POLL_S = 0.05
#: Seconds between checks for changes another process or workstation made to the store
#: (one cheap local query; a shared gallery's mirror is kept current in the background).
STORE_CHECK_S = 0.5
#: Seconds between writes of the recognition log (a new appearance is written at once).
LOG_FLUSH_S = 1.0
#: Seconds between applications of the log's retention setting.
PRUNE_EVERY_S = 3600.0

RecognizerFactory = Callable[[Paths, Settings], "Recognizer"]


def _open_recognizer(paths: Paths, settings: Settings) -> Recognizer:
    from app.pipeline.recognizer import Recognizer

    return Recognizer.open(paths, settings)


@dataclass(frozen=True)
class FramePayload:
    """One processed frame, handed from the worker to the GUI.

    The frame array is the exact picture the result was computed on, so the overlay is
    always drawn on the face it belongs to. The worker never touches it again.

    Attributes
    ----------
    frame : ndarray
        RGB ``uint8`` (H, W, 3).
    result : FrameResult
        Faces, names and per-stage timings.
    fps : float
        Frames processed per second, over the last two seconds.
    source : str
        Short description of the source.
    live : bool
        True for cameras and streams.
    position : int
        Index of the frame in a video file (frames read so far minus one); for live
        sources, the number of frames processed since the source opened.
    dropped : int
        Frames dropped so far on this source (pipeline or GUI busy).
    frame_count : int or None
        Frames in a video file (None for live sources, or if the file does not say).
    paused : bool
        The video file is paused on this frame.
    source_fps : float
        The source's own frame rate (a file's position in seconds is position / fps).
    """

    frame: np.ndarray
    result: FrameResult
    fps: float
    source: str
    live: bool
    position: int = 0
    dropped: int = 0
    frame_count: int | None = None
    paused: bool = False
    source_fps: float = 0.0


class Reply(QObject):
    """The answer to one job sent to the worker.

    It lives in the GUI thread; the worker emits its signals, which Qt delivers to the
    GUI thread as queued calls. Connect before the job is queued (`PipelineWorker.call`
    does), or an early answer would be lost.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Ask the worker to skip the job if it has not started (thread-safe)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called."""
        return self._cancelled.is_set()


Job = Callable[["Recognizer", Reply], Any]


class PipelineWorker(QThread):
    """Capture and recognition off the GUI thread; owner of the `Recognizer`.

    Parameters
    ----------
    paths : Paths
        The data directory.
    settings : Settings
        Initial settings (camera resolution is read from them when a camera opens).
    recognizer_factory : callable, optional
        Builds the recognizer in the worker thread (tests may inject one).
    """

    #: The recognizer is open; carries the list of enrolled `Person`.
    ready = Signal(object)
    #: Fatal: the recognizer could not be opened (model or store error) or the worker
    #: crashed. Carries the user-facing message. The thread has ended.
    failed = Signal(str)
    #: A processed frame (`FramePayload`); call `frame_shown` after painting it.
    result_ready = Signal(object)
    #: A source started delivering frames: (description, is_live).
    source_opened = Signal(str, bool)
    #: A source could not be opened: (SourceSpec, message).
    source_failed = Signal(object, str)
    #: A live source stopped delivering frames mid-stream: message.
    source_lost = Signal(str)
    #: A video file reached its end.
    source_ended = Signal()
    #: Playback stopped on request.
    source_closed = Signal()
    #: The cameras that open and deliver a frame (list of int) and whether the caller
    #: asked to open one automatically.
    cameras_found = Signal(object, bool)
    #: Enrolled people changed (list of `Person`), after enroll, rename or remove.
    people_changed = Signal(object)
    #: Rows of the recognition log that started or changed (list of `Sighting`).
    log_rows = Signal(object)
    #: A video file was paused (True) or resumed (False).
    paused_changed = Signal(bool)
    #: A shared gallery went away (epoch seconds it did) or came back (None).
    store_status = Signal(object)

    #: Every worker ever created (weakly), so tests can check none is left running.
    instances: weakref.WeakSet[PipelineWorker] = weakref.WeakSet()

    def __init__(self, paths: Paths, settings: Settings | None = None, *,
                 recognizer_factory: RecognizerFactory | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("PipelineWorker")
        self.paths = paths
        self._settings = (settings or Settings.load(paths.settings)).validated()
        self._factory = recognizer_factory or _open_recognizer
        self._jobs: queue.SimpleQueue[tuple[Job, Reply, bool] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._gui_busy = threading.Event()
        self._busy_since = 0.0
        self.ack_timeout = GUI_ACK_TIMEOUT_S
        self._alive = True  # False once run() has finished (read from the GUI thread)
        self.failure: str | None = None
        # Worker-thread state: touched only inside run() and the jobs it executes.
        self._source: VideoSource | None = None
        self._grabber: LatestFrameGrabber | None = None
        self._reader: ReadAhead | None = None
        self._pipe: StreamPipeline | None = None
        self._ready: Processed | None = None  # finished, waiting for the GUI to be free
        self._spec: SourceSpec | None = None
        self._play_start = 0.0
        self._position = 0
        self._last_frame_at = 0.0
        self._live_count = 0
        self._tracker = FaceTracker()
        self._checked_store_at = 0.0
        self._offline_since: float | None = None
        self._stamps: deque[float] = deque(maxlen=64)
        self._paused = False
        self._journal = AppearanceLog()
        self._journal_at = 0.0
        self._new_log_row = False
        self._pruned_at = -PRUNE_EVERY_S
        self.frames_processed = 0
        self.frames_dropped = 0
        PipelineWorker.instances.add(self)

    # -- API for the GUI thread (only sets events and queues jobs) -------------------
    def call(self, job: Job, *, on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[str], None] | None = None,
             on_progress: Callable[[Any], None] | None = None,
             people_changed: bool = False) -> Reply:
        """Run ``job(recognizer, reply)`` in the worker thread.

        Parameters
        ----------
        job : callable
            Runs in the worker thread with the recognizer; its return value is emitted
            by ``reply.finished``. A `FacerecError` becomes ``reply.failed`` with its
            message; any other exception is logged and reported as unexpected.
        on_done, on_error, on_progress : callable, optional
            Connected to the reply *before* the job is queued.
        people_changed : bool
            Emit `people_changed` after the job succeeds.

        Returns
        -------
        Reply
            Deleted (``deleteLater``) after it has answered.
        """
        reply = Reply(self)
        if on_progress is not None:
            reply.progress.connect(on_progress)
        if on_done is not None:
            reply.finished.connect(on_done)
        if on_error is not None:
            reply.failed.connect(on_error)
        reply.finished.connect(reply.deleteLater)
        reply.failed.connect(reply.deleteLater)
        if not self._alive or self._stop.is_set():
            # Answer on the next turn of the event loop, not now: the caller has not yet
            # stored the reply it is about to receive.
            message = self.failure or "recognition is not running"
            QTimer.singleShot(0, reply, lambda: reply.failed.emit(message))
        else:
            self._jobs.put((job, reply, people_changed))
        return reply

    def open_source(self, source: SourceSpec | str | int, start_at: int = 0) -> None:
        """Close the current source (if any) and play *source* (a file from frame *start_at*)."""
        spec = source if isinstance(source, SourceSpec) else SourceSpec.parse(source)
        self._internal(lambda rec, reply: self._do_open(rec, spec, start_at))

    def pause(self) -> None:
        """Hold a video file on its current frame (live sources cannot pause)."""
        self._internal(lambda rec, reply: self._do_pause(True))

    def resume(self) -> None:
        """Play a paused video file on from where it was."""
        self._internal(lambda rec, reply: self._do_pause(False))

    def seek(self, frame: int) -> None:
        """Jump to frame *frame* of a video file; a paused file shows that frame."""
        self._internal(lambda rec, reply: self._do_seek(rec, frame))

    def clear_log(self, on_done: Callable[[Any], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> Reply:
        """Delete every row of the recognition log; the faces in view start new rows."""
        def job(rec: Recognizer, reply: Reply) -> int:
            n = rec.store.clear_sightings()
            self._journal.reset()
            return n

        return self.call(job, on_done=on_done, on_error=on_error)

    @property
    def tracker(self) -> FaceTracker:
        """The current stream's tracker. Worker thread only: for jobs (corrections)."""
        return self._tracker

    def close_source(self) -> None:
        """Stop playing and release the camera or file."""
        self._internal(lambda rec, reply: self._do_close(emit=True))

    def replay(self) -> None:
        """Play the last source again from the start (after it ended or was lost)."""
        self._internal(lambda rec, reply: self._spec and self._do_open(rec, self._spec))

    def find_cameras(self, auto_open: bool = False) -> None:
        """Probe for cameras; answers with `cameras_found`."""
        self._internal(lambda rec, reply: self._do_find_cameras(auto_open))

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings from the next frame on (resolution: next camera opened)."""
        settings = settings.validated()

        def job(rec: Recognizer, reply: Reply) -> None:
            rec.apply_settings(settings)
            retention_changed = settings.log_retention_days != self._settings.log_retention_days
            self._settings = settings
            if retention_changed:
                self._prune_log(rec)

        self._internal(job)

    def frame_shown(self) -> None:
        """The GUI has painted the last payload: the worker may emit the next one."""
        self._gui_busy.clear()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Stop the thread, release the source and the models; True once it has ended."""
        self._stop.set()
        self._jobs.put(None)  # wake the idle loop
        if not self.isRunning():
            return True
        return bool(self.wait(timeout_ms))

    def _internal(self, job: Job) -> None:
        if self._alive and not self._stop.is_set():
            reply = Reply(self)
            reply.finished.connect(reply.deleteLater)
            reply.failed.connect(reply.deleteLater)
            self._jobs.put((job, reply, False))

    # -- the worker thread ---------------------------------------------------------
    def run(self) -> None:  # noqa: D102 - QThread entry point
        log.info("pipeline worker starting")
        try:
            rec = self._factory(self.paths, self._settings)
        except FacerecError as exc:
            log.error("cannot start recognition: %s", exc)
            self._finish(str(exc))
            return
        except Exception as exc:  # a bug or a native failure: keep the GUI alive
            log.exception("cannot start recognition")
            self._finish(f"unexpected {type(exc).__name__}: {exc}")
            return
        failure = None
        try:
            self._prune_log(rec)  # before the window shows the log
            self.ready.emit(rec.people())
            while not self._stop.is_set():
                self._run_jobs(rec, JOB_BUDGET_S)
                if self._source is None or self._paused:
                    self._settle()  # a frame in flight when the file was paused is shown
                    self._show_ready()
                    self._wait_for_job(rec, 0.25)
                    self._housekeeping(rec)
                else:
                    self._step(rec)
        except Exception as exc:
            log.exception("pipeline worker crashed")
            failure = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            self._do_close(emit=False)
            self._publish_log(rec)
            try:
                rec.close()
            except Exception:
                log.exception("closing the recognizer failed")
            self._finish(failure)
        log.info("pipeline worker stopped")

    def _finish(self, failure: str | None) -> None:
        self._alive = False
        if failure is not None:
            self.failure = failure
            self.failed.emit(failure)
        # Answer every job still queued so no dialog waits forever.
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].failed.emit(failure or "recognition has stopped")

    def _check_store(self, rec: Recognizer) -> None:
        """Follow changes made elsewhere, and say when a shared gallery goes or returns."""
        now = time.monotonic()
        if now - self._checked_store_at <= STORE_CHECK_S:
            return
        # Another facerec process (the CLI, a second window, another workstation) may have
        # changed the gallery; one cheap query tells, and the index catches up only then.
        self._checked_store_at = now
        self._settle()
        try:
            if rec.refresh():
                self.people_changed.emit(rec.people())
        except FacerecError as exc:  # e.g. the store is locked for long: try again later
            log.warning("could not follow changes to the gallery: %s", exc)
        since = rec.store.offline_since
        if since != self._offline_since:
            self._offline_since = since
            self.store_status.emit(since)

    def _wait_for_job(self, rec: Recognizer, timeout: float) -> None:
        try:
            item = self._jobs.get(timeout=timeout)
        except queue.Empty:
            return
        self._settle()
        if item is not None:
            self._execute(rec, *item)

    def _run_jobs(self, rec: Recognizer, budget: float) -> None:
        if not self._jobs.empty():
            self._settle()  # a job may change the recognizer: no frame may be in flight
        deadline = time.monotonic() + budget
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._execute(rec, *item)

    def _execute(self, rec: Recognizer, job: Job, reply: Reply, people_changed: bool) -> None:
        if reply.cancelled:
            reply.deleteLater()  # nobody waits for it; do not keep its closures alive
            return
        try:
            result = job(rec, reply)
        except FacerecError as exc:
            reply.failed.emit(str(exc))
            return
        except Exception as exc:
            log.exception("job failed")
            reply.failed.emit(
                f"unexpected {type(exc).__name__}: {exc} (details in the log)")
            return
        reply.finished.emit(result)
        if people_changed:
            self.people_changed.emit(rec.people())

    # -- store and recognition log (worker thread) --------------------------------
    def _housekeeping(self, rec: Recognizer) -> None:
        """Between frames or while idle: follow the store, write the log, apply retention."""
        self._check_store(rec)
        now = time.monotonic()
        if self._journal.has_pending and (self._new_log_row or now - self._journal_at >= LOG_FLUSH_S):
            self._publish_log(rec)
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._prune_log(rec)

    def _log_frame(self, result: FrameResult) -> None:
        """Account for a finished frame in the recognition log (frames in order).

        A new row (someone came into view) is written and shown by the next
        `_housekeeping`, before the next frame is processed.
        """
        if self._journal.update(result):
            self._new_log_row = True

    def _publish_log(self, rec: Recognizer) -> None:
        """Write the log rows that changed and hand them to the GUI."""
        self._journal_at = time.monotonic()
        self._new_log_row = False
        rows: list[Sighting] = self._journal.pending()
        if not rows:
            return
        try:
            self._journal.flush(rec.store)
        except StoreError as exc:  # the rows stay pending: written on the next try
            log.warning("recognition log not written yet: %s", exc)
        self.log_rows.emit(rows)

    def _prune_log(self, rec: Recognizer) -> None:
        self._pruned_at = time.monotonic()
        try:
            prune(rec.store, self._settings.log_retention_days)
        except StoreError as exc:
            log.warning("recognition log not pruned: %s", exc)

    # -- sources (worker thread) ---------------------------------------------------
    def _do_pause(self, paused: bool) -> None:
        if self._source is None or self._grabber is not None or paused == self._paused:
            return  # nothing to pause, a live source, or already so
        self._paused = paused
        if not paused:  # pace on from here, not from where the file was paused
            self._play_start = time.monotonic() - self._position / self._source.fps
        self.paused_changed.emit(paused)

    def _do_seek(self, rec: Recognizer, frame: int) -> None:
        if self._reader is None or self._spec is None or self._pipe is None:
            return  # nothing playing, or a live source
        # The file is decoded ahead on the reader's thread, which alone may touch its
        # capture: open the file again at *frame* and give it a new reader.
        s = self._settings
        try:
            source = VideoSource(self._spec, s.camera_width, s.camera_height)
        except SourceError as exc:
            log.warning("cannot seek %s: %s", self._spec.describe(), exc)
            return
        if not source.seek(frame):
            source.close()
            return
        self._pipe.close()  # the frame in flight belongs to another moment: dropped
        self._ready = None
        self._reader.close()
        self._source, self._reader = source, ReadAhead(source)
        self._position = frame if source.frame_count is None else min(frame, source.frame_count - 1)
        self._play_start = time.monotonic() - self._position / source.fps
        self._tracker.reset()  # the faces of another moment
        self._pipe = self._new_pipe(rec)
        if self._paused:  # show the frame sought, and stay there
            shown = self._reader.read()
            if shown is not None:
                self._position += 1
                self._process_frame(shown, force=True)

    def _new_pipe(self, rec: Recognizer) -> StreamPipeline:
        from app.pipeline.stream import StreamPipeline

        return StreamPipeline(rec, self._tracker)

    def _do_open(self, rec: Recognizer, spec: SourceSpec, start_at: int = 0) -> None:
        self._do_close(emit=False)
        self._spec = spec
        log.info("opening %s", spec.describe())
        s = self._settings
        try:
            source = VideoSource(spec, s.camera_width, s.camera_height)
        except SourceError as exc:
            log.warning("cannot open %s: %s", spec.describe(), exc)
            self.source_failed.emit(spec, str(exc))
            return
        except Exception as exc:  # a native decoder failure: report it like any other
            log.exception("cannot open %s", spec.describe())
            self.source_failed.emit(spec, f"{spec.describe()}: {type(exc).__name__}: {exc}")
            return
        self._source = source
        self._play_start = self._last_frame_at = time.monotonic()
        self._position = 0
        if start_at > 0 and source.seek(start_at):  # a stopped file resumes where it was
            self._position = source.frames_read
            self._play_start -= self._position / source.fps
        # From here on a thread of its own reads the source (and releases it).
        if source.is_live:
            self._grabber = LatestFrameGrabber(source)
        else:
            self._reader = ReadAhead(source)
        self._live_count = 0
        self._tracker = FaceTracker()  # tracks belong to one stream
        self._pipe = self._new_pipe(rec)
        self._ready = None
        self._journal.start(spec.describe())  # new tracker, new track ids: new appearances
        self._paused = False
        self._stamps.clear()
        self.frames_dropped = 0
        self._gui_busy.clear()
        self.source_opened.emit(spec.describe(), source.is_live)

    def _do_close(self, emit: bool) -> None:
        pipe, grabber, reader, source = self._pipe, self._grabber, self._reader, self._source
        self._pipe, self._ready = None, None
        self._grabber, self._reader, self._source = None, None, None
        if pipe is not None:
            pipe.close()
        # A reader thread releases the source as it ends; otherwise this (the worker)
        # thread, which opened it, does.
        if grabber is not None:
            grabber.close()
        elif reader is not None:
            reader.close()
        elif source is not None:
            source.close()
        if emit and source is not None:
            self.source_closed.emit()

    def _do_find_cameras(self, auto_open: bool) -> None:
        try:
            cams = list_cameras()
        except Exception:  # a misbehaving camera driver must not stop recognition
            log.exception("probing for cameras failed")
            cams = []
        # The camera we are reading from is busy and would not be found by probing.
        if self._source is not None and self._spec is not None and self._spec.kind == "camera":
            cams = sorted(set(cams) | {int(self._spec.target)})
        log.info("cameras found: %s", cams)
        self.cameras_found.emit(cams, auto_open)

    def _next_frame(self) -> np.ndarray | None | bool:
        """The frame to process now; None at the end; False if none is due yet."""
        if self._grabber is not None:
            t0 = time.monotonic()
            try:
                frame = self._grabber.latest(timeout=POLL_S * 4)
            except SourceError:
                # A timeout (nothing new yet) is not a loss unless it lasts; an error the
                # grabber hit returns at once and is re-raised.
                if time.monotonic() - t0 < POLL_S * 4 * 0.9:
                    raise
                if time.monotonic() - self._last_frame_at > LIVE_TIMEOUT_S:
                    raise SourceError(f"{self._spec.describe() if self._spec else 'source'}: "
                                      f"no frame for {LIVE_TIMEOUT_S:.0f} s") from None
                return False
            if frame is None:
                raise SourceError(f"{self._spec.describe() if self._spec else 'stream'}: ended")
            return frame
        # A video file: frame n is due at start + n / fps. When processing falls behind,
        # skip the frames whose successor is already due, so the file plays in real time.
        source, reader = self._source, self._reader
        assert source is not None and reader is not None
        fps = source.fps
        now = time.monotonic()
        due = self._play_start + self._position / fps
        if due > now:
            self._stop.wait(min(due - now, POLL_S))
            return False
        target = int((now - self._play_start) * fps)
        if target - self._position > 2 * fps:  # far behind (e.g. a long job): resync
            self._play_start = now - self._position / fps
            target = self._position
        while self._position < target:
            if reader.read() is None:
                return None
            self._position += 1
            self.frames_dropped += 1
        frame = reader.read()
        self._position += 1
        return frame

    def _frame_waiting(self) -> bool:
        """True if the next frame can be read at once (then the pipeline overlaps)."""
        if self._grabber is not None:
            return self._grabber.has_new()
        if self._source is None or self._paused:
            return False
        return self._play_start + self._position / self._source.fps <= time.monotonic()

    def _step(self, rec: Recognizer) -> None:
        """Read, process and emit one frame; a failure ends the source, not the worker."""
        try:
            self._process_next(rec)
        except SourceError as exc:
            log.warning("source lost: %s", exc)
            self._do_close(emit=False)
            self.source_lost.emit(str(exc))
        except Exception as exc:  # a decoder or model error on one frame
            log.exception("frame processing failed")
            self._do_close(emit=False)
            self.source_lost.emit(f"unexpected {type(exc).__name__}: {exc} (details in the log)")

    def _gui_free(self, now: float) -> bool:
        """Whether a payload may be emitted: the GUI painted the last one (or timed out)."""
        if not self._gui_busy.is_set():
            return True
        if now - self._busy_since < self.ack_timeout:
            return False
        log.debug("no acknowledgement from the GUI for %.1f s; sending anyway", now - self._busy_since)
        return True

    def _process_next(self, rec: Recognizer) -> None:
        self._show_ready()
        frame = self._next_frame()
        if frame is False:
            return
        if frame is None:
            log.info("%s ended", self._spec.describe() if self._spec else "video")
            self._settle()
            self._show_ready(force=True)
            self._do_close(emit=False)
            self.source_ended.emit()
            return
        assert isinstance(frame, np.ndarray)
        self._housekeeping(rec)
        self._process_frame(frame)

    def _process_frame(self, frame: np.ndarray, force: bool = False) -> None:
        """Push one frame through the pipeline; emit the newest finished one.

        A frame read while the GUI is still busy is dropped (unless *force*). A forced
        frame is one shown while paused (a seek): it is finished and emitted at once, and
        it is not a sighting in time, so the recognition log does not count it.
        """
        pipe = self._pipe
        assert pipe is not None
        now = time.monotonic()
        self._last_frame_at = now
        self._show_ready()
        if not force and not self._gui_free(now):
            self.frames_dropped += 1  # the GUI is still painting the last one: drop
            self._collect(pipe.finish())  # shown once the GUI is free
            return
        if self._grabber is not None:
            self._live_count += 1
        position = self._live_count if self._grabber is not None else self._position - 1
        if force:
            self._settle()
            for p in pipe.push(frame, position) + pipe.finish():
                self._count(p)
                self._ready = p
            self._show_ready(force=True)
            return
        self._collect(pipe.push(frame, position))
        if not self._frame_waiting():
            self._collect(pipe.finish())  # nothing else to do: show this frame now
        self._show_ready()

    def _settle(self) -> None:
        """Finish the frame in flight, so nothing runs on the recognizer meanwhile."""
        if self._pipe is not None:
            self._collect(self._pipe.finish())

    def _count(self, p: Processed) -> None:
        self.frames_processed += 1
        self._stamps.append(time.monotonic())
        if self.frames_processed % 100 == 0:
            log.info("%.1f fps, %.0f ms per frame, %d dropped", self._fps(),
                     p.result.timings.get("total", 0.0), self.frames_dropped)

    def _collect(self, done: list[Processed]) -> None:
        """Count and log finished frames; keep the newest for the GUI (older are dropped)."""
        for p in done:
            self._count(p)
            self._log_frame(p.result)
            if self._ready is not None:
                self.frames_dropped += 1  # superseded before the GUI could take it
            self._ready = p

    def _fps(self) -> float:
        if len(self._stamps) < 2:
            return 0.0
        while len(self._stamps) > 2 and self._stamps[-1] - self._stamps[0] > 2.0:
            self._stamps.popleft()
        span = self._stamps[-1] - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def _show_ready(self, force: bool = False) -> None:
        """Emit the newest finished frame if the GUI can take it (or if *force*)."""
        ready = self._ready
        if ready is None or not (force or self._gui_free(time.monotonic())):
            return
        self._ready = None
        live = self._grabber is not None
        self._busy_since = time.monotonic()
        self._gui_busy.set()
        self.result_ready.emit(FramePayload(
            ready.frame, ready.result, self._fps(), self._spec.describe() if self._spec else "",
            live, ready.tag, self.frames_dropped,
            None if live or self._source is None else self._source.frame_count, self._paused,
            self._source.fps if self._source is not None else 0.0))
