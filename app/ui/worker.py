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
queue never fills up and the picture on screen is always the newest.

The source itself is played by a `Stream` (app/pipeline/recognition/stream.py, Qt-free, the same
loop ``facerec watch`` and ``facerec bench`` use): its decoding thread, a file paced at
its own frame rate, the live timeout, seeking, the tracker, the fps window, following
the gallery. Its results come out in order; a finished frame that the GUI is too busy
to take is kept until it is free, unless a newer one finishes first. The stream is
drained before any job runs, so jobs see the recognizer idle.

Methods on a `QThread` subclass run in the *caller's* thread: everything public here
only sets an `Event` or puts a job on the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from app.config import Paths, Settings
from app.pipeline.errors import FacerecError, SourceError, StoreError
from app.pipeline.recognition.appearances import AppearanceLog, prune
from app.pipeline.recognition.sources import SourceKind, SourceSpec, VideoSource, list_cameras
from app.pipeline.recognition.tracking import FaceTracker

if TYPE_CHECKING:
    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.recognition.stream import GalleryFollower, Processed, Stream
    from app.pipeline.types import FrameResult, Sighting

log = logging.getLogger(__name__)

#: If the GUI has not acknowledged a frame for this long, assume the payload was lost
#: (e.g. its receiver was deleted) and emit again rather than stall forever.
GUI_ACK_TIMEOUT_S = 1.0
#: How long queued jobs may run between two frames before a frame is processed.
JOB_BUDGET_S = 0.08
#: Seconds between checks for changes another process or workstation made to the store
#: (one cheap local query; a shared gallery's mirror is kept current in the background).
STORE_CHECK_S = 0.5
#: Seconds between writes of the recognition log (a new appearance is written at once).
LOG_FLUSH_S = 1.0
#: Seconds between applications of the log's retention setting.
PRUNE_EVERY_S = 3600.0

def _open_recognizer(paths: Paths, settings: Settings) -> Recognizer:
    from app.pipeline.recognition.recognizer import Recognizer

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
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("PipelineWorker")
        self.paths = paths
        self._settings = (settings or Settings.load(paths.settings)).validated()
        self._jobs: queue.SimpleQueue[tuple[Job, Reply, bool] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._gui_busy = threading.Event()
        self._busy_since = 0.0
        self.ack_timeout = GUI_ACK_TIMEOUT_S
        self._alive = True  # False once run() has finished (read from the GUI thread)
        self.failure: str | None = None
        # Worker-thread state: touched only inside run() and the jobs it executes.
        self._stream: Stream | None = None
        self._follower: GalleryFollower | None = None
        self._ready: Processed | None = None  # finished, waiting for the GUI to be free
        self._spec: SourceSpec | None = None
        self._tracker = FaceTracker()
        self._journal = AppearanceLog()
        self._journal_at = 0.0
        self._new_log_row = False
        self._pruned_at = -PRUNE_EVERY_S
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
        self._internal(lambda rec, reply: self._do_seek(frame))

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
        return self._stream.tracker if self._stream is not None else self._tracker

    @property
    def frames_dropped(self) -> int:
        """Frames dropped so far on the current source (pipeline or GUI busy)."""
        stream = self._stream
        return stream.dropped if stream is not None else 0

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
            rec = _open_recognizer(self.paths, self._settings)
        except FacerecError as exc:
            log.error("cannot start recognition: %s", exc)
            self._finish(str(exc))
            return
        except Exception as exc:  # a bug or a native failure: keep the GUI alive
            log.exception("cannot start recognition")
            self._finish(f"unexpected {type(exc).__name__}: {exc}")
            return
        failure = None
        # Imported here, as the recognizer is: the window shows before the models load.
        from app.pipeline.recognition.stream import GalleryFollower

        self._follower = GalleryFollower(
            rec, STORE_CHECK_S, on_change=lambda: self.people_changed.emit(rec.people()),
            on_offline=self.store_status.emit)
        try:
            self._prune_log(rec)  # before the window shows the log
            self.ready.emit(rec.people())
            while not self._stop.is_set():
                self._run_jobs(rec, JOB_BUDGET_S)
                stream = self._stream
                if stream is None or stream.paused:
                    self._settle()  # a frame in flight when the file was paused is shown
                    self._show_ready()
                    self._wait_for_job(rec, 0.25)
                    if self._follower.due():
                        self._settle()
                        self._follower.check()
                    self._housekeeping(rec)
                else:
                    self._step(rec, stream)
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

    # -- recognition log (worker thread) ------------------------------------------
    def _housekeeping(self, rec: Recognizer) -> None:
        """Between frames or while idle: write the log, apply retention."""
        now = time.monotonic()
        if self._journal.has_pending and (self._new_log_row or now - self._journal_at >= LOG_FLUSH_S):
            self._publish_log(rec)
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._prune_log(rec)

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
        if self._stream is not None and self._stream.pause(paused):
            self.paused_changed.emit(paused)

    def _do_seek(self, frame: int) -> None:
        stream = self._stream
        if stream is None or not stream.seek(frame):
            return  # nothing playing, a live source, or the file cannot seek there
        self._ready = None  # the frame finished before the seek belongs to another moment
        if stream.paused:  # show the frame sought, and stay there
            for p in stream.still():
                self._ready = p
            self._show_ready(force=True)

    def _do_open(self, rec: Recognizer, spec: SourceSpec, start_at: int = 0) -> None:
        from app.pipeline.recognition.stream import Stream

        self._do_close(emit=False)
        self._spec = spec
        log.info("opening %s", spec.describe())
        s = self._settings
        try:
            source = VideoSource(spec, s.camera_width, s.camera_height)
            self._stream = Stream(rec, source, self._collect, paced=True, start_at=start_at,
                                  follower=self._follower,
                                  housekeeping=lambda: self._housekeeping(rec))
        except SourceError as exc:
            log.warning("cannot open %s: %s", spec.describe(), exc)
            self.source_failed.emit(spec, str(exc))
            return
        except Exception as exc:  # a native decoder failure: report it like any other
            log.exception("cannot open %s", spec.describe())
            self.source_failed.emit(spec, f"{spec.describe()}: {type(exc).__name__}: {exc}")
            return
        self._ready = None
        self._journal.start(spec.describe())  # new tracker, new track ids: new appearances
        self._gui_busy.clear()
        self.source_opened.emit(spec.describe(), source.is_live)

    def _do_close(self, emit: bool) -> None:
        stream, self._stream, self._ready = self._stream, None, None
        if stream is None:
            return
        self._tracker = stream.tracker  # corrections may still ask for the last one
        stream.close()
        if emit:
            self.source_closed.emit()

    def _do_find_cameras(self, auto_open: bool) -> None:
        try:
            cams = list_cameras()
        except Exception:  # a misbehaving camera driver must not stop recognition
            log.exception("probing for cameras failed")
            cams = []
        # The camera we are reading from is busy and would not be found by probing.
        if self._stream is not None and self._stream.spec.kind == SourceKind.CAMERA:
            cams = sorted(set(cams) | {int(self._stream.spec.target)})
        log.info("cameras found: %s", cams)
        self.cameras_found.emit(cams, auto_open)

    def _step(self, rec: Recognizer, stream: Stream) -> None:
        """Read, process and emit one frame; a failure ends the source, not the worker."""
        try:
            self._show_ready()
            if stream.step(wanted=self._gui_wants_frame):
                self._show_ready()
                return
            if stream.live:
                raise SourceError(f"{stream.describe()}: ended")
        except SourceError as exc:
            log.warning("source lost: %s", exc)
            self._do_close(emit=False)
            self.source_lost.emit(str(exc))
            return
        except Exception as exc:  # a decoder or model error on one frame
            log.exception("frame processing failed")
            self._do_close(emit=False)
            self.source_lost.emit(f"unexpected {type(exc).__name__}: {exc} (details in the log)")
            return
        log.info("%s ended", stream.describe())
        self._show_ready(force=True)
        self._do_close(emit=False)
        self.source_ended.emit()

    def _gui_wants_frame(self) -> bool:
        """Asked for each frame read: show what is ready; False while the GUI still paints."""
        self._show_ready()
        return self._gui_free(time.monotonic())

    def _gui_free(self, now: float) -> bool:
        """Whether a payload may be emitted: the GUI painted the last one (or timed out)."""
        if not self._gui_busy.is_set():
            return True
        if now - self._busy_since < self.ack_timeout:
            return False
        log.debug("no acknowledgement from the GUI for %.1f s; sending anyway", now - self._busy_since)
        return True

    def _settle(self) -> None:
        """Finish the frame in flight, so nothing runs on the recognizer."""
        if self._stream is not None:
            self._stream.finish()

    def _collect(self, p: Processed) -> None:
        """A finished frame, in order: log it; keep the newest for the GUI (older are dropped)."""
        if self._journal.update(p.result):
            self._new_log_row = True  # written and shown before the next frame
        if self._ready is not None and self._stream is not None:
            self._stream.dropped += 1  # superseded before the GUI could take it
        self._ready = p

    def _show_ready(self, force: bool = False) -> None:
        """Emit the newest finished frame if the GUI can take it (or if *force*)."""
        ready, stream = self._ready, self._stream
        if ready is None or stream is None or not (force or self._gui_free(time.monotonic())):
            return
        self._ready = None
        self._busy_since = time.monotonic()
        self._gui_busy.set()
        self.result_ready.emit(FramePayload(
            ready.frame, ready.result, stream.fps_now(), stream.describe(), stream.live,
            ready.tag, stream.dropped, stream.frame_count, stream.paused, stream.fps))
