"""Frame sources: a camera, a video file or a network stream, through OpenCV.

Every source yields RGB ``uint8`` frames. Reading and decoding happen on a thread of
their own, off the recognition thread's critical path: live sources (cameras, streams)
through a `LatestFrameGrabber`, which keeps only the newest frame, so a slow consumer
always sees the present and never a growing backlog; video files through a `ReadAhead`,
which decodes a few frames ahead and yields every frame in order.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.errors import SourceError
from app.pipeline.imageio import display_name
from app.pipeline.native import quiet_native_stderr

log = logging.getLogger(__name__)

#: Consecutive failed reads after which a live source counts as lost.
LOST_AFTER_FAILURES = 25
#: Longest a network stream may take to open or to deliver a frame.
STREAM_TIMEOUT_MS = 5000


class SourceKind(str, Enum):
    """What a `SourceSpec` names (a ``str``, so it compares equal to its value)."""

    CAMERA = "camera"
    FILE = "file"
    STREAM = "stream"


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked for: a camera index, a file path or a stream URL."""

    kind: SourceKind
    target: int | str

    @classmethod
    def parse(cls, text: str | int) -> SourceSpec:
        """Read a source the way the CLI takes it: ``0``, ``clip.mp4`` or ``rtsp://...``."""
        if isinstance(text, int) or str(text).strip().isdigit():
            return cls(SourceKind.CAMERA, int(text))
        s = str(text).strip()
        if "://" in s:
            return cls(SourceKind.STREAM, s)
        return cls(SourceKind.FILE, s)

    def describe(self) -> str:
        """A short label for messages and the window title."""
        if self.kind == SourceKind.CAMERA:
            return f"camera {self.target}"
        if self.kind == SourceKind.FILE:
            return Path(str(self.target)).name
        return str(self.target)


class VideoSource:
    """Frames from a camera, file or stream.

    Parameters
    ----------
    spec : SourceSpec or str
        What to open.
    width, height : int or None
        Resolution to request from a camera.

    Raises
    ------
    SourceError
        If the source cannot be opened or yields no frame.
    """

    def __init__(self, spec: SourceSpec | str | int, width: int | None = None,
                 height: int | None = None) -> None:
        self.spec = spec if isinstance(spec, SourceSpec) else SourceSpec.parse(spec)
        self.frames_read = 0
        #: Milliseconds the last `read` spent reading and decoding.
        self.read_ms = 0.0
        #: Whether the capture hands over each frame's JPEG bytes, decoded here (`_raw_jpeg`).
        self._jpeg = False
        self._cap = self._open(width, height)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0.0 < self.fps < 1000.0):
            self.fps = 30.0 if self.spec.kind != SourceKind.FILE else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if self.spec.kind == SourceKind.FILE and count > 0 else None
        t0 = time.perf_counter()
        first = self._read_raw()
        if self._jpeg and (first is None or (first.shape[1], first.shape[0]) != self._size()):
            # Not the frames the camera announced: let OpenCV decode, as it otherwise does.
            log.info("%s: its JPEG frames do not decode here; OpenCV decodes them",
                     self.spec.describe())
            self._jpeg = False
            first = self._read_raw() if self._let_opencv_decode() else None
        self.read_ms = (time.perf_counter() - t0) * 1e3
        if first is None:
            self._cap.release()
            raise SourceError(f"{self.spec.describe()}: opened, but it delivers no frames")
        self._pending: np.ndarray | None = first

    def _open(self, width: int | None, height: int | None) -> cv2.VideoCapture:
        spec = self.spec
        if spec.kind == SourceKind.FILE:
            p = Path(str(spec.target))
            name = display_name(p)
            _check_video_file(p, name)
            try:
                with open(p, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise SourceError(f"{name}: cannot read ({exc.strerror})") from None
            cap = _open_file(p)
            if not cap.isOpened():
                raise SourceError(f"{name}: not a video OpenCV can decode")
        elif spec.kind == SourceKind.CAMERA:
            with quiet_camera_probe():  # OpenCV logs every backend it tries; we say what failed
                cap = cv2.VideoCapture(int(spec.target))
            if not cap.isOpened():
                raise SourceError(f"camera {spec.target} not found or busy")
            if width and height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            self._raw_jpeg(cap)
        else:
            # Bounded waits: an unreachable camera would otherwise block the caller for
            # FFmpeg's default ~30 s (and a GUI worker could not stop in time).
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
            if not _utf8(str(spec.target)):
                raise SourceError(f"{display_name(str(spec.target))}: not a valid stream URL "
                                  "(it is not UTF-8 text)")
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_ANY, params)
            if not cap.isOpened():
                raise SourceError(f"cannot open stream {spec.target}")
        return cap

    def _raw_jpeg(self, cap: cv2.VideoCapture) -> None:
        """Have a Motion-JPEG camera hand over its frames undecoded, to decode them to RGB.

        OpenCV's V4L2 backend decodes each MJPG frame with `cv2.imdecode` to BGR, which we
        then turned into RGB: a pass over the frame that decoding straight to RGB
        (``IMREAD_COLOR_RGB``: the same decoder, the same pixels) saves.
        With ``CAP_PROP_CONVERT_RGB`` off that backend returns the frame's bytes as one
        row. Only that backend and format are switched; anything else is decoded by
        OpenCV as before, and so is this one if its first frame does not decode to the
        announced size (`__init__`).
        """
        flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
        if (flag is not None and fourcc(cap) in (b"MJPG", b"JPEG")
                and cap.getBackendName() == "V4L2" and cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)):
            self._jpeg = True

    def _let_opencv_decode(self) -> bool:
        """Undo `_raw_jpeg`: OpenCV decodes the frames again; False if it cannot."""
        return bool(self._cap.set(cv2.CAP_PROP_CONVERT_RGB, 1))

    def _size(self) -> tuple[int, int]:
        """The frame size the capture announces (width, height)."""
        return (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))

    def _read_raw(self) -> np.ndarray | None:
        try:
            ok, bgr = self._cap.read()
            if ok and self._jpeg and bgr is not None and bgr.ndim == 2 and bgr.shape[0] == 1:
                # One row of JPEG bytes; an empty row, or one that does not decode, is a
                # failed read (imdecode asserts on an empty buffer).
                rgb: np.ndarray | None = cv2.imdecode(bgr, cv2.IMREAD_COLOR_RGB) if bgr.size else None
                return rgb if rgb is not None and rgb.size else None
        except cv2.error as exc:
            raise SourceError(f"{self.spec.describe()}: decode error ({exc})") from None
        if not ok or bgr is None or bgr.size == 0:
            return None
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        # In place: each read returns a new array, so no other frame shares this buffer,
        # and a second full-frame allocation per frame is saved.
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)

    @property
    def is_live(self) -> bool:
        """Cameras and streams run in real time; files do not."""
        return self.spec.kind != SourceKind.FILE

    def read(self) -> np.ndarray | None:
        """The next frame, or None when a file has ended.

        Raises
        ------
        SourceError
            When a live source stops delivering frames (camera unplugged, stream cut).
        """
        if self._pending is not None:
            frame, self._pending = self._pending, None
            self.frames_read += 1
            return frame
        if self._cap is None:
            return None
        failures = 0
        while True:
            t0 = time.perf_counter()
            raw = self._read_raw()
            self.read_ms = (time.perf_counter() - t0) * 1e3
            if raw is not None:
                self.frames_read += 1
                return raw
            if not self.is_live:
                return None
            failures += 1
            if failures >= LOST_AFTER_FAILURES:
                raise SourceError(f"{self.spec.describe()}: lost (no frames)")
            time.sleep(0.02)

    def seek(self, frame: int) -> bool:
        """Make frame number *frame* of a file the next one `read` returns.

        False for live sources, or if the file cannot seek (nothing changes then).
        """
        if self.is_live or self._cap is None:
            return False
        frame = max(0, int(frame))
        if self.frame_count is not None:
            frame = min(frame, self.frame_count - 1)
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame):
            return False
        self._pending = None
        self.frames_read = frame
        return True

    def close(self) -> None:
        """Release the device or file (idempotent)."""
        cap, self._cap = self._cap, None  # type: ignore[assignment]
        if cap is not None:
            cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_video_file(p: Path, name: str) -> None:
    """Refuse, before anything opens it, what cannot be a video file.

    A FIFO with no writer would block `open` forever, and a device (/dev/zero, a
    terminal) would be read without end; only regular files are played.
    """
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SourceError(f"{name}: no such video file") from None
    except OSError as exc:
        raise SourceError(f"{name}: cannot read ({exc.strerror})") from None
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{name}: is a directory, not a video")
    if stat.S_ISCHR(st.st_mode) and p.name.startswith("video") and p.name[5:].isdigit():
        raise SourceError(f"{name}: is a camera device, not a video file; give its number: "
                          f"facerec watch {int(p.name[5:])}")
    what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
            "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
    raise SourceError(f"{name}: is {what}, not a video file")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate escape: bytes that are not UTF-8
        return False
    return True


def _open_file(p: Path) -> cv2.VideoCapture:
    """Open a video file, even one whose name is not valid UTF-8.

    OpenCV takes the name as UTF-8 text; given a surrogate escape it crashes the
    process. Such a file is opened here and handed over as /proc/self/fd/N (Linux);
    FFmpeg keeps its own descriptor, so ours is closed once the capture is open.

    A Motion-JPEG file is decoded on one thread: FFmpeg's frame threads (one per core)
    cost CPU without making a frame any sooner for a reader that runs ahead on a thread
    of its own. On the bench's 720p video, six passes each way in turn: 2.0-2.6 ms of CPU
    per frame instead of 2.7-3.05, the same pixels. Other codecs keep FFmpeg's threads: a
    4K H.264 frame on one thread would take longer than a frame lasts.
    """
    cap = _capture(p)
    if cap.isOpened() and fourcc(cap) in (b"MJPG", b"JPEG") and cap.getBackendName() == "FFMPEG":
        single = _capture(p, [cv2.CAP_PROP_N_THREADS, 1])
        if single.isOpened():
            cap.release()
            return single
    return cap


def fourcc(cap: cv2.VideoCapture) -> bytes:
    """The capture's codec as four bytes (e.g. b"MJPG"); a backend may report -1."""
    return (int(cap.get(cv2.CAP_PROP_FOURCC) or 0) & 0xFFFFFFFF).to_bytes(4, "little")


def _capture(p: Path, params: Sequence[int] = ()) -> cv2.VideoCapture:
    """`cv2.VideoCapture` of file *p* with open *params* (any backend), by name or by fd."""
    if _utf8(str(p)):
        return cv2.VideoCapture(str(p), cv2.CAP_ANY, list(params))
    if not Path("/proc/self/fd").is_dir():
        raise SourceError(f"{display_name(p)}: its name is not valid UTF-8, which OpenCV cannot "
                          "open here; rename the file")
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return cv2.VideoCapture(f"/proc/self/fd/{fd}", cv2.CAP_ANY, list(params))
    finally:
        os.close(fd)


class _ReaderThread:
    """Read a source on a thread of its own; the thread also releases it."""

    def __init__(self, source: VideoSource, name: str) -> None:
        self.source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read_all()
        finally:
            # Released here, by the only thread that reads it: releasing a capture while
            # another thread is inside read() is undefined behaviour in OpenCV.
            self.source.close()

    def _read_all(self) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading; the reader thread releases the source as it ends.

        If a read is stuck (a stalled stream) the thread finishes, and releases, when the
        read returns; the stream's read timeout bounds that.
        """
        self._stop.set()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            log.warning("%s: still reading; it is released when the read returns",
                        self.source.spec.describe())


class LatestFrameGrabber(_ReaderThread):
    """Read a live source on its own thread, keeping only the newest frame.

    A camera buffers frames when nobody reads them; reading on our own schedule would
    show the past. The grabber reads as fast as the device delivers and overwrites the
    slot, so `latest` always returns the present (or waits for the next frame).
    """

    def __init__(self, source: VideoSource) -> None:
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._taken = 0
        self._error: Exception | None = None
        self._done = False
        super().__init__(source, "frame-grabber")

    def _read_all(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                with self._cond:
                    if frame is None:
                        self._done = True
                        self._cond.notify_all()
                        return
                    self._frame, self._seq = frame, self._seq + 1
                    self._cond.notify_all()
        except Exception as exc:  # surfaced to the consumer by latest()
            with self._cond:
                self._error, self._done = exc, True
                self._cond.notify_all()

    def has_new(self) -> bool:
        """True if a frame newer than the last one returned is waiting."""
        with self._cond:
            return self._seq != self._taken

    def latest(self, timeout: float = 5.0) -> np.ndarray | None:
        """The newest frame not yet returned; None at end. Re-raises a source error."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq == self._taken and not self._done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(f"{self.source.spec.describe()}: no frame for {timeout:.0f} s")
                self._cond.wait(remaining)
            if self._seq != self._taken:
                self._taken = self._seq
                return self._frame
            if self._error is not None:
                raise self._error
            return None


#: Frames a `ReadAhead` decodes ahead of its consumer (each one is a full frame in memory).
READ_AHEAD = 3


class ReadAhead(_ReaderThread):
    """Decode a video file on its own thread, a few frames ahead, every frame in order.

    The consumer's `read` then costs a queue hand-off instead of a decode, and decoding
    runs on the other core while the consumer works on the previous frame.

    Parameters
    ----------
    source : VideoSource
        A file (a live source belongs in a `LatestFrameGrabber`).
    depth : int
        Decoded frames kept ready.
    """

    def __init__(self, source: VideoSource, depth: int = READ_AHEAD) -> None:
        self._queue: queue.Queue[np.ndarray | Exception | None] = queue.Queue(maxsize=max(1, depth))
        self._ended = False
        #: Milliseconds spent reading and decoding each of the last frames (for `bench`).
        self.read_ms: deque[float] = deque(maxlen=4096)
        super().__init__(source, "read-ahead")

    def _read_all(self) -> None:
        item: np.ndarray | Exception | None
        try:
            while not self._stop.is_set():
                item = self.source.read()
                if item is not None:
                    self.read_ms.append(self.source.read_ms)
                if not self._put(item) or item is None:
                    return
        except Exception as exc:  # surfaced to the consumer by read()
            self._put(exc)

    def _put(self, item: np.ndarray | Exception | None) -> bool:
        """Queue *item*, waiting for room; False if the reader was stopped meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def ready(self) -> bool:
        """True if the next frame is decoded and waiting."""
        return not self._queue.empty()

    def read(self) -> np.ndarray | None:
        """The next frame in order; None at the end. Re-raises a decode error."""
        if self._ended:
            return None
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():  # closed meanwhile
                    self._ended = True
                    return None
        if isinstance(item, Exception):
            self._ended = True
            raise item
        if item is None:
            self._ended = True
        return item


@contextmanager
def quiet_camera_probe() -> Iterator[None]:
    """Silence OpenCV's own log while cameras are tried by index.

    Opening an index with no camera behind it is how cameras are found, yet OpenCV
    logs every backend's failure as an error ("Camera index out of range", "can't open
    camera by index") straight to the terminal. The caller reports the outcome itself.
    """
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:  # pragma: no cover - every supported OpenCV has it
        with quiet_native_stderr():
            yield
        return
    with _cv_log_lock:
        previous = logging_api.getLogLevel()
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
        try:
            with quiet_native_stderr():
                yield
        finally:
            logging_api.setLogLevel(previous)


_cv_log_lock = threading.Lock()


def list_cameras(max_index: int = 6) -> list[int]:
    """Indices of the cameras that open and deliver a frame (silently: see `quiet_camera_probe`)."""
    found = []
    with quiet_camera_probe():
        for i in range(max_index):
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    return found
