"""``facerec bench``: where the time goes, measured on this machine.

Four parts, each reported as numbers with the machine they were measured on:

1. **Pipeline stages** on synthetic camera streams made from the shared photos
   (640x480 and 1280x720, with 1 and 5 faces): milliseconds for decode, detect, align,
   embed (per embedded face), search and total per frame, with the tracker as the app
   runs it, plus the cost of embedding every face of every frame without it.
2. **Throughput**: processed fps on a 720p video file with 5 faces against its native fps.
3. **Search**: latency p50/p99 and recall@1 of the HNSW path against exact search on
   synthetic clustered 512-d galleries (1k to 1M faces), numpy brute force as the
   baseline and the physical limit of a scan (bytes per query over measured memory
   bandwidth); index build time.
4. **Start-up** to the first processed frame in a fresh process, and peak memory.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.pipeline.recognition.index import CANDIDATES, FaceIndex, ef_search
from app.pipeline.types import EMBEDDING_DIM, Gallery

#: Photos of five different people (shared test set), for the synthetic scenes.
SCENE_PHOTOS = ("img1.jpg", "img13.jpg", "img20.jpg", "img16.jpg", "img3.jpg")
#: Each search query is timed this many times and its fastest run kept (see `bench_search`).
SEARCH_REPEATS = 3


def machine() -> dict[str, Any]:
    """Cores and CPU model of this machine."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    return {"cores": cores, "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of a list of numbers."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# -- synthetic scenes ----------------------------------------------------------------

def face_portraits(photos_dir: Path, detector: Any, n: int) -> list[np.ndarray]:
    """Head-and-shoulders crops (2.2x the face box) of *n* different people."""
    from app.pipeline.imageio import load_image

    out = []
    for name in SCENE_PHOTOS[:n]:
        rgb = load_image(photos_dir / name)
        x, y, w, h = detector.detect(rgb)[0].box
        cx, cy, s = x + w / 2, y + h / 2, 2.2 * max(w, h)
        x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
        out.append(rgb[y0:int(cy + s / 2), x0:int(cx + s / 2)].copy())
    return out


def scene(portraits: Sequence[np.ndarray], size: tuple[int, int], t: int) -> np.ndarray:
    """A frame with the portraits side by side, drifting a little with time *t*."""
    w, h = size
    frame = np.full((h, w, 3), 60, np.uint8)
    n = len(portraits)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    cell_w, cell_h = w // cols, h // rows
    side = int(min(cell_w, cell_h) * 0.9)
    for i, p in enumerate(portraits):
        r, c = divmod(i, cols)
        img = cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)
        dx = int(3 * np.sin(t / 5 + i))
        x0 = c * cell_w + (cell_w - side) // 2 + dx
        y0 = r * cell_h + (cell_h - side) // 2
        frame[y0:y0 + side, max(0, x0):x0 + side] = img[:, max(0, -x0):]
    return frame


def write_video(path: Path, portraits: Sequence[np.ndarray], size: tuple[int, int],
                frames: int, fps: float = 30.0) -> Path:
    """Write a synthetic scene as MJPG video (what a USB webcam typically sends)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for t in range(frames):
        writer.write(cv2.cvtColor(scene(portraits, size, t), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# -- 1 and 2: the pipeline -----------------------------------------------------------

#: Frames at the start of a run left out of the per-stage means (first embeddings, caches).
WARM_FRAMES = 10


def bench_stream(rec: Any, video: Path, frames: int | None = None, overlap: bool = True
                 ) -> dict[str, Any]:
    """Run a video through the tracked pipeline as ``facerec watch`` does (the same `Stream`).

    Per-stage ms of work per frame (decode on the reader thread, the rest as
    `Recognizer.process` reports it), wall-clock ms per frame and processed fps (stages
    overlap on two cores), and CPU ms per frame (every thread of the process).
    """
    from app.pipeline.recognition.stream import Processed, Stream

    keys = ("detect", "align", "embed", "search", "total")
    stages: dict[str, list[float]] = {k: [] for k in keys}
    embed_per_face: list[float] = []
    faces_seen: list[int] = []
    done_at: list[float] = []

    def on_result(p: Processed) -> None:
        res = p.result
        for k in keys:
            stages[k].append(res.timings[k])
        if res.embedded:
            embed_per_face.append(res.timings["embed"] / res.embedded)
        faces_seen.append(len(res.faces))
        done_at.append(time.perf_counter())

    with Stream(rec, str(video), on_result, overlap=overlap) as stream:
        cpu0, t_start = time.process_time(), time.perf_counter()
        n = stream.run(frames)
        wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu0
    native_fps = stream.fps
    decode = stream.decode_ms[:n]
    warm = min(WARM_FRAMES, n // 4)
    ms = {k: round(float(np.mean(v[warm:])), 2) for k, v in stages.items()}
    ms["decode"] = round(float(np.mean(decode[warm:])), 2) if decode[warm:] else 0.0
    ms["total"] = round(ms["total"] + ms["decode"], 2)
    wall_ms = (done_at[-1] - done_at[warm]) / (n - 1 - warm) * 1e3 if n - 1 > warm else 0.0
    return {
        "frames": n,
        "faces_per_frame": float(np.median(faces_seen[warm:])) if faces_seen else 0.0,
        "ms": ms,
        "wall_ms": round(wall_ms, 2),
        "cpu_ms": round(cpu / max(n, 1) * 1e3, 2),
        "embed_ms_per_face": round(float(np.median(embed_per_face)), 2) if embed_per_face else None,
        "processed_fps": round(n / wall, 1) if wall > 0 else 0.0,
        "native_fps": round(native_fps, 1),
    }


def bench_camera(rec: Any, video: Path) -> dict[str, Any]:
    """CPU a live camera costs: the video delivered at its own frame rate, as a camera does.

    Frames are decoded and handed over at the video's rate through a
    `LatestFrameGrabber`, and processed as ``facerec watch`` processes a camera. A
    Motion-JPEG video is decoded as a USB webcam's MJPG frames are (`VideoSource._raw_jpeg`):
    each frame's JPEG bytes straight to RGB, not through FFmpeg's decoder and a colour
    conversion (0.6-0.9 ms more at 720p). *Cores busy* is the CPU time of the whole
    process (every thread: decoding, detection, embedding) over the wall time: 1.0 is one
    core kept busy; it is what decides fan noise and battery life on a laptop.
    """
    from app.pipeline.recognition.sources import VideoSource, fourcc
    from app.pipeline.recognition.stream import Processed, Stream

    class Camera(VideoSource):
        """A video file that delivers each frame no sooner than a camera would."""

        def __init__(self, path: Path) -> None:
            super().__init__(str(path))
            self._t0: float | None = None

        def _open(self, width: int | None, height: int | None) -> cv2.VideoCapture:
            cap = super()._open(width, height)
            # The file's packets, undecoded: what a webcam's V4L2 driver hands over.
            if fourcc(cap) == b"MJPG" and cap.set(cv2.CAP_PROP_FORMAT, -1):
                self._jpeg = True
            return cap

        def _let_opencv_decode(self) -> bool:
            return False  # FFmpeg's raw mode cannot be switched off

        def read(self) -> np.ndarray | None:
            now = time.perf_counter()
            if self._t0 is None:
                self._t0 = now
            due = self._t0 + self.frames_read / self.fps
            if due > now:
                time.sleep(due - now)
            return super().read()

    camera = Camera(video)
    steady: list[tuple[float, float]] = []  # (CPU, wall) when the first second's frames are done

    def on_result(p: Processed) -> None:
        if p.result.frame_index + 1 == round(camera.fps):
            steady.append((time.process_time(), time.perf_counter()))

    with Stream(rec, camera, on_result, live=True) as stream:  # it closes the camera
        cpu0, t0 = time.process_time(), time.perf_counter()
        n = stream.run()
        end_cpu, end = time.process_time(), time.perf_counter()
    wall, cpu = end - t0, end_cpu - cpu0
    row = {"camera_fps": round(camera.fps, 1), "seconds": round(wall, 1),
           "frames_delivered": camera.frames_read, "frames_processed": n,
           "cores_busy": round(cpu / wall, 3), "cpu_ms_per_frame": round(cpu / max(n, 1) * 1e3, 2)}
    if steady and end > steady[0][1]:
        row["cores_busy_steady"] = round((end_cpu - steady[0][0]) / (end - steady[0][1]), 3)
    return row


def _paste(frame: np.ndarray, img: np.ndarray, x0: int, y0: int) -> None:
    """Copy *img* into *frame* with its top-left corner at (x0, y0), clipped to the frame."""
    h, w = img.shape[:2]
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = img[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def bench_tiles(rec: Any, portraits: Sequence[np.ndarray], frames: int = 90) -> list[dict[str, Any]]:
    """What the tile scan costs and finds.

    Three scenes, each run as a stream with the tile scan (`scan.TileScheduler`) and with
    the whole-frame pass only: a 1080p frame with five faces 40-80 px high (people
    across a room), a 640x480 close-up of one face (a webcam sitter), and a 720p sitter
    beside whom a person with a 48 px face walks in from the edge at frame 20 (frames
    until found are counted from then). Faces found, frames until all are found, and
    median ms per frame.
    """
    from app.pipeline.recognition.tracking import TILES_PER_FRAME, FaceTracker

    heights = (40, 48, 56, 64, 80)
    far = np.full((1080, 1920, 3), 90, np.uint8)
    for i, (p, fh) in enumerate(zip(portraits, heights)):
        side = round(fh * 2.2)  # the portraits are 2.2x the face box
        img = cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)
        x0, y0 = 150 + i * 360, 300 + (i % 2) * 380
        far[y0:y0 + side, x0:x0 + side] = img
    close = scene(portraits[:1], (640, 480), 0)
    sitter = scene(portraits[:1], (1280, 720), 0)
    walker = cv2.resize(portraits[1], (106, 106), interpolation=cv2.INTER_AREA)  # a 48 px face
    enters = 20

    def walk_in(t: int) -> np.ndarray:
        frame = sitter.copy()
        if t >= enters:
            _paste(frame, walker, 1280 - 106 - 6 * (t - enters), 120)  # wholly in view at once
        return frame

    out = []
    for label, make, want, start in (("1080p, 5 faces 40-80 px", lambda t: far, 5, 0),
                                      ("640x480 close-up", lambda t: close, 1, 0),
                                      ("720p sitter, a 48 px face walks in", walk_in, 2, enters)):
        for tiles in (TILES_PER_FRAME, 0):
            tracker = FaceTracker(tiles_per_frame=tiles)
            times, found, first_all = [], 0, None
            for i in range(frames):
                frame = make(i)
                t0 = time.perf_counter()
                res = rec.process(frame, i, tracker)
                times.append((time.perf_counter() - t0) * 1e3)
                found = len(res.faces)
                if first_all is None and found >= want:
                    first_all = i - start
            out.append({"scene": label, "tiles": bool(tiles), "faces": want,
                        "faces_found": found, "frames_until_all_found": first_all,
                        "ms_per_frame": round(float(np.median(times[WARM_FRAMES:])), 2)})
    return out


def bench_untracked(rec: Any, frame: np.ndarray, repeats: int = 20) -> dict[str, float]:
    """Per-frame cost when every face of every frame is detected and embedded."""
    times: dict[str, list[float]] = {k: [] for k in ("detect", "align", "embed", "search", "total")}
    faces = 0
    for _ in range(repeats):
        res = rec.process(frame)
        faces = len(res.faces)
        for k in times:
            times[k].append(res.timings[k])
    out = {k: round(float(np.median(v)), 2) for k, v in times.items()}
    out["faces"] = faces
    out["embed_ms_per_face"] = round(out["embed"] / max(faces, 1), 2)
    return out


def bench_threads(embedder_factory: Callable[[int], Any], crop: np.ndarray,
                  threads: Sequence[int]) -> dict[str, dict[str, float]]:
    """Embedding ms per face by thread count and batch size (1 and 5)."""
    out = {}
    for n in threads:
        emb = embedder_factory(n)
        row = {}
        for batch in (1, 5):
            x = np.stack([crop] * batch)
            emb.embed(x)
            t = []
            for _ in range(15):
                t0 = time.perf_counter()
                emb.embed(x)
                t.append((time.perf_counter() - t0) * 1e3 / batch)
            row[f"batch{batch}"] = round(float(np.median(t)), 2)
        out[str(n)] = row
    return out


# -- 3: search -----------------------------------------------------------------------

def memory_bandwidth_gbs() -> float:
    """Streaming read bandwidth from main memory, GB/s (best of 5).

    Measured as a BLAS matrix-vector product over 512 MiB, far larger than any cache, on
    every core: the fastest this machine can read every byte once. (A single-threaded
    ``sum`` reads at a fraction of this and would overstate the limit.)
    """
    m = np.ones((2**27 // EMBEDDING_DIM, EMBEDDING_DIM), dtype=np.float32)  # 512 MiB
    q = np.ones(EMBEDDING_DIM, dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        m @ q
        best = min(best, time.perf_counter() - t0)
    return m.nbytes / best / 1e9


#: The synthetic galleries: ``faces`` (fitted to real embeddings, `app.pipeline.tools.facespace`)
#: or ``uniform`` (identities as uniform random directions: the worst case for a graph).
GENERATORS = ("faces", "uniform")


def synthetic_gallery(n_faces: int, per_person: int = 5, seed: int = 0, kind: str = "uniform",
                      n_queries: int = 500) -> tuple[Gallery, np.ndarray, np.ndarray]:
    """Clustered unit vectors: identities with noisy samples, and held-out probes.

    ``uniform``: centres uniform on the sphere, isotropic noise set so same-identity
    cosines (~0.6) resemble real FaceNet pairs. ``faces``: centres and scatter drawn from
    the statistics of the app's real embeddings (`app.pipeline.tools.facespace`).
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}: one of {', '.join(GENERATORS)}")
    rng = np.random.default_rng(seed)
    people = max(1, n_faces // per_person)
    pids = np.repeat(np.arange(people, dtype=np.int64), per_person)[:n_faces]
    vecs = np.empty((n_faces, EMBEDDING_DIM), np.float32)
    if kind == "faces":
        from app.pipeline.tools.facespace import load_face_space

        space = load_face_space()
        centres = space.centres(rng, people)
        for s in range(0, n_faces, 100_000):  # in chunks: keeps peak memory near the result
            e = min(n_faces, s + 100_000)
            vecs[s:e] = space.photos(rng, centres[pids[s:e]])
        q_ids = rng.integers(0, people, n_queries)
        queries = space.photos(rng, centres[q_ids])
    else:
        centres = rng.standard_normal((people, EMBEDDING_DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        for s in range(0, n_faces, 100_000):
            e = min(n_faces, s + 100_000)
            noise = rng.standard_normal((e - s, EMBEDDING_DIM), dtype=np.float32)
            noise *= 0.8 / np.linalg.norm(noise, axis=1, keepdims=True)
            vecs[s:e] = centres[pids[s:e]] + noise
            vecs[s:e] /= np.linalg.norm(vecs[s:e], axis=1, keepdims=True)
        q_ids = rng.integers(0, people, n_queries)
        noise = rng.standard_normal((n_queries, EMBEDDING_DIM), dtype=np.float32)
        noise *= 0.8 / np.linalg.norm(noise, axis=1, keepdims=True)
        queries = centres[q_ids] + noise
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    names = {int(p): f"p{p}" for p in range(people)}
    return Gallery(np.arange(1, n_faces + 1), pids, vecs, names, 1), queries.astype(np.float32), q_ids


def bench_search(n_faces: int, threads: int, bandwidth_gbs: float) -> dict[str, Any]:
    """Latency and recall of exact and HNSW search over *n_faces* synthetic faces."""
    gallery, queries, _ = synthetic_gallery(n_faces)
    t0 = time.perf_counter()
    index = FaceIndex(gallery, None, "hnsw", threads)
    build_s = time.perf_counter() - t0
    vecs = gallery.embeddings

    def lat(fn: Callable[[np.ndarray], object], qs: np.ndarray) -> list[float]:
        """Per-query latency: each query's fastest of `SEARCH_REPEATS` passes.

        On a shared machine a single pass puts scheduler pauses into the p99; the
        passes run over the whole query set in turn, so no query is timed warm from
        its own previous run.
        """
        best = np.full(len(qs), np.inf)
        for _ in range(SEARCH_REPEATS):
            for k, q in enumerate(qs):
                t = time.perf_counter()
                fn(q[None])
                best[k] = min(best[k], (time.perf_counter() - t) * 1e3)
        return best.tolist()

    n_exact_q = 100 if n_faces <= 100_000 else 30
    truth = np.array([int(np.argmax(vecs @ q)) for q in queries])
    brute = lat(lambda q: int(np.argmax(vecs @ q[0])), queries[:n_exact_q])
    hnsw = lat(lambda q: index.candidates(q), queries)
    rows, _ = index.candidates(queries)
    recall = float((rows[:, 0] == truth).mean())
    scan_bytes = vecs.nbytes
    return {
        "faces": n_faces,
        "build_s": round(build_s, 2),
        "brute_ms_p50": round(percentile(brute, 50), 3),
        "brute_ms_p99": round(percentile(brute, 99), 3),
        "hnsw_ms_p50": round(percentile(hnsw, 50), 3),
        "hnsw_ms_p99": round(percentile(hnsw, 99), 3),
        "hnsw_recall_at_1": round(recall, 4),
        "scan_limit_ms": round(scan_bytes / (bandwidth_gbs * 1e9) * 1e3, 3),
        "candidates": CANDIDATES,
        "ef": ef_search(n_faces),
    }


# -- 4: start-up and memory ----------------------------------------------------------

def bench_startup(video: Path, data_dir: Path) -> dict[str, float]:
    """Seconds from launching a fresh process to its first processed frame, and peak RSS.

    The fresh process (`first_frames`) does what ``facerec watch`` does up to its first
    frames, through the same `Stream`: an in-process figure would leave out the
    interpreter, the imports and the models' first load, which is what a user waits for.
    """
    env = {**os.environ, "FACEREC_HOME": str(data_dir)}
    cmd = [sys.executable, "-c", "import sys; from app.pipeline.tools.bench import first_frames; "
           "first_frames(sys.argv[1], sys.argv[2], 30)", str(video), str(data_dir)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - t0
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"first_frame_s": round(first, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def first_frames(video: str, data_dir: str, frames: int) -> None:
    """The start-up probe's process: open the store and models as ``watch`` does, play *video*.

    Prints a line per processed frame (flushed, so the parent sees the first at once).
    """
    from app.config import Paths, Settings
    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.recognition.sources import VideoSource
    from app.pipeline.recognition.stream import Stream

    paths = Paths.resolve(data_dir)
    settings = Settings.load(paths.settings)
    source = VideoSource(video, settings.camera_width, settings.camera_height)
    with Recognizer.open(paths) as rec, \
            Stream(rec, source, lambda p: print(len(p.result.faces), flush=True)) as stream:
        rec.outdated()  # as ``watch`` does, for its note on faces to enroll again
        stream.run(frames)


#: Each stream and each camera runs this many times (once with ``--quick``); the run
#: with the median figure (wall ms per frame; cores busy) is the one reported, and every
#: run's figure is kept beside it (``runs``): on a shared machine one run of the same
#: code can be 10-20 % off the next.
REPEATS = 3


def median_run(measure: Callable[[], dict[str, Any]], key: str, repeats: int) -> dict[str, Any]:
    """The result of *measure* whose *key* is the median of *repeats* runs, with ``runs``."""
    rows = [measure() for _ in range(repeats)]
    middle = dict(sorted(rows, key=lambda r: float(r[key]))[len(rows) // 2])
    middle["runs"] = [r[key] for r in rows]
    return middle


#: The streams measured: (width, height, faces).
STREAMS = ((640, 480, 1), (640, 480, 5), (640, 360, 1), (1280, 720, 1), (1280, 720, 5))
#: The live cameras simulated (30 fps): (width, height, faces).
CAMERAS = ((1280, 720, 1), (1280, 720, 5))


def run(photos_dir: Path, sizes: Sequence[int], quick: bool = False,
        progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run every part; return the results as one JSON-able dict."""
    from app.config import Paths, Settings
    from app.pipeline.recognition.align import align_face
    from app.pipeline.recognition.embedder import FaceEmbedder, default_threads
    from app.pipeline.recognition.recognizer import Recognizer

    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "load_before": [round(v, 2) for v in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        rec = Recognizer.open(Paths(tmpd / "data"), Settings())
        with rec:
            portraits = face_portraits(photos_dir, rec.detector, 5)
            # Enroll three of the five so search has a gallery and names are decided.
            for p, name in zip(portraits[:3], ("A", "B", "C")):
                rec.enroll(name, [rec.prepare_image(p).face])
            progress("embedding threads")
            crop = align_face(portraits[0], rec.detector.detect(portraits[0])[0])
            results["embed_threads"] = bench_threads(
                lambda n: FaceEmbedder(n), crop, sorted({1, default_threads()}))
            streams = {}
            n_frames = 60 if quick else 240
            repeats = 1 if quick else REPEATS
            videos = {}
            for w, h, faces in STREAMS:
                key = f"{w}x{h}_{faces}face"
                progress(f"stream {key}")
                videos[key] = write_video(tmpd / f"{key}.avi", portraits[:faces], (w, h), n_frames)
                row = median_run(partial(bench_stream, rec, videos[key]), "wall_ms", repeats)
                row["untracked"] = bench_untracked(rec, scene(portraits[:faces], (w, h), 0),
                                                   5 if quick else 20)
                streams[key] = row
            results["streams"] = streams
            cameras = {}
            for w, h, faces in CAMERAS:
                key = f"{w}x{h}_{faces}face"
                progress(f"camera {key} at 30 fps")
                cameras[key] = median_run(partial(bench_camera, rec, videos[key]), "cores_busy",
                                          repeats)
            results["camera"] = cameras
            progress("small faces: tiles on and off")
            results["tiles"] = bench_tiles(rec, portraits, 60 if quick else 90)
        progress("start-up")
        results["startup"] = bench_startup(tmpd / "1280x720_5face.avi", tmpd / "data")
    progress("memory bandwidth")
    bw = memory_bandwidth_gbs()
    results["memory_bandwidth_gbs"] = round(bw, 2)
    search = []
    for n in sizes:
        progress(f"search {n} faces")
        search.append(bench_search(n, default_threads(), bw))
    results["search"] = search
    results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return results


def _load(r: dict[str, Any]) -> str:
    """How busy the machine was around a run: its load averages, if recorded."""
    before, after = r.get("load_before"), r.get("load_after")
    if not before or not after:
        return "not recorded"
    return f"{before[0]:.1f} before, {after[0]:.1f} after (1-minute averages)"


def _runs(row: dict[str, Any]) -> str:
    """Every run's figure of a repeated measurement (`median_run`), or "" for one run."""
    runs = row.get("runs") or []
    return ", ".join(str(v) for v in runs) if len(runs) > 1 else ""


def to_markdown(r: dict[str, Any]) -> str:
    """BENCHMARKS.md from the results of `run`."""
    m = r["machine"]
    lines = [
        "# facerec benchmarks",
        "",
        f"Measured by `{r.get('command', 'facerec bench')}` on {r['date']}: **{m['cores']} cores**, "
        f"{m['cpu']}, Python {m['python']}, {m['system']}. Load average: {_load(r)}. Each stream "
        "and camera ran three times; the tables give the run with the median wall time (camera: "
        "cores busy), and *runs* every run's figure. The machine is shared: read the figures as "
        "ratios and orders of magnitude. "
        "`facerec bench --compare OLD.json` prints a run against a saved one (`--save`), stage "
        "by stage.",
        "",
        "## Pipeline stages (ms per frame, tracked, as the app runs)",
        "",
        "Synthetic MJPG streams of shared photos (1 or 5 different people); 3 of the 5 are "
        "enrolled; run as `facerec watch` runs a video file. The stage columns are the work "
        "per frame: *decode* on the reader thread, *detect* (whole frame, regions around small "
        "tracked faces, tiles, and the second look at small faces before embedding), *align* "
        "(tracking and crops), *embed* and *search* (with the vote); *work* is their sum. The "
        "stages of consecutive frames overlap on two cores, so a frame takes *wall* ms "
        "(1000 / fps in steady state); *CPU* is the CPU time of every thread of the process "
        "per frame. *embed/face* is the time of one embedding; the tracker embeds a face when "
        "its track starts, when it grows or sharpens, and every 8 frames, so *embed* per frame "
        "is far below faces x embed/face.",
        "",
        "| stream | faces | decode | detect | align | embed | search | work | **wall** | CPU "
        "| embed/face | processed fps | native fps | runs (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in r["streams"].items():
        ms = s["ms"]
        lines.append(
            f"| {key.split('_')[0]} | {s['faces_per_frame']:.0f} | {ms['decode']} | {ms['detect']} | "
            f"{ms['align']} | {ms['embed']} | {ms['search']} | {ms['total']} | "
            f"**{s.get('wall_ms', '')}** | {s.get('cpu_ms', '')} | {s['embed_ms_per_face']} | "
            f"{s['processed_fps']} | {s['native_fps']} | {_runs(s)} |")
    lines += [
        "",
        "Without the tracker (every face of every frame detected over all tiles and embedded, "
        "as for a photo):",
        "",
        "| stream | faces | detect | embed | embed/face | total |",
        "|---|---|---|---|---|---|",
    ]
    for key, s in r["streams"].items():
        u = s["untracked"]
        lines.append(f"| {key.split('_')[0]} | {u['faces']} | {u['detect']} | {u['embed']} | "
                     f"{u['embed_ms_per_face']} | {u['total']} |")
    if r.get("camera"):
        lines += [
            "",
            "## A live camera: CPU at the camera's own rate",
            "",
            "The stream above delivered at 30 fps, as a camera delivers it (decoded on the "
            "grabber thread, the newest frame processed), for its whole length. *Cores busy* "
            "is the process's CPU time over the wall time (1.0 = one core kept busy): what "
            "decides fan noise and battery life. Over the whole 8 s it includes the start "
            "(every tile scanned once, the first embeddings of each face), which a camera "
            "left running pays once; *after the first second* leaves that out.",
            "",
            "| camera | faces | frames delivered | frames processed | CPU ms per frame "
            "| **cores busy** | after the first second | runs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, c in r["camera"].items():
            size, faces = key.split("_")
            lines.append(f"| {size} at {c['camera_fps']:.0f} fps | {faces.removesuffix('face')} | "
                         f"{c['frames_delivered']} | {c['frames_processed']} | "
                         f"{c['cpu_ms_per_frame']} | **{c['cores_busy']}** | "
                         f"{c.get('cores_busy_steady', '')} | {_runs(c)} |")
    from app.pipeline.recognition.scan import NEAR_RESCAN, RESCAN_AFTER, SWEEP_FRAMES
    from app.pipeline.recognition.tracking import TILES_PER_FRAME

    lines += [
        "",
        "## Small faces: the tile scan",
        "",
        "Three scenes run as a stream, with the tile scan (`scan.TileScheduler`: every tile "
        f"once when the stream starts or cuts, {TILES_PER_FRAME} a frame at most; after that a "
        f"tile where the picture changed, at most every {RESCAN_AFTER} frames, or every "
        f"{NEAR_RESCAN} if it changed only near a tracked face, and each at least every "
        f"{SWEEP_FRAMES} frames; plus a region around each small tracked face) and with the "
        "whole-frame pass only. For the walk-in, frames until found count from the frame the "
        "face is first wholly in view.",
        "",
        "| scene | detection | faces found | frames until all found | ms per frame |",
        "|---|---|---|---|---|",
    ]
    for t in r["tiles"]:
        until = t["frames_until_all_found"]
        lines.append(f"| {t['scene']} | {'tiles' if t['tiles'] else 'whole frame only'} | "
                     f"{t['faces_found']} of {t['faces']} | {'never' if until is None else until} | "
                     f"{t['ms_per_frame']} |")
    lines += ["", "## Embedding threads (ms per face)", "", "| threads | batch 1 | batch 5 |",
              "|---|---|---|"]
    for n, row in r["embed_threads"].items():
        lines.append(f"| {n} | {row['batch1']} | {row['batch5']} |")
    st = r["startup"]
    lines += [
        "",
        "## Start-up and memory",
        "",
        f"- First processed frame {st['first_frame_s']} s after launching "
        "`facerec watch` (new process: imports, model load and verification, store, first frame).",
        f"- Peak resident memory of that process: {st['peak_rss_mb']} MB.",
        "",
        "## Search",
        "",
        f"Synthetic clustered 512-d galleries of the `uniform` generator (identities as random "
        f"directions, the hardest case for a graph; 5 noisy samples each; 500 held-out "
        f"probes). Brute force is numpy `vecs @ q`; the scan limit is the gallery's bytes over the "
        f"measured streaming read bandwidth ({r['memory_bandwidth_gbs']} GB/s, a BLAS gemv over "
        f"512 MiB on all cores); galleries that fit in cache scan faster than that. HNSW (M=16, "
        f"ef_construction=200, ef growing with the gallery: see `index.ef_search`) returns "
        f"{r['search'][0]['candidates'] if r['search'] else ''} candidates, re-ranked with "
        "exact vectors; recall@1 is against exact search. Each probe's latency is its fastest "
        f"of {SEARCH_REPEATS} passes over the probe set (a single pass on a shared machine puts "
        "scheduler pauses into the p99).",
        "",
        "Brute force reads the whole gallery per query, so its time grows with the gallery "
        "and is set by memory bandwidth (the *brute read* column: gallery bytes over the p50); "
        "where it reads faster than the probe, the probe underestimates this machine's peak. "
        "HNSW visits a number of vectors set by its breadth (ef), not by the gallery size.",
        "",
        "| faces | brute p50 | brute p99 | brute read | scan limit | ef | HNSW p50 | HNSW p99 "
        "| recall@1 | build |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["search"]:
        read = s["faces"] * EMBEDDING_DIM * 4 / (s["brute_ms_p50"] / 1e3) / 1e9
        lines.append(f"| {s['faces']:,} | {s['brute_ms_p50']} ms | {s['brute_ms_p99']} ms | "
                     f"{read:.0f} GB/s | {s['scan_limit_ms']} ms | {s['ef']} | {s['hnsw_ms_p50']} ms | "
                     f"{s['hnsw_ms_p99']} ms | {s['hnsw_recall_at_1']} | {s['build_s']} s |")
    lines += ["", f"Peak memory of the benchmark process: {r['bench_peak_rss_mb']} MB.", "",
              "Raw results: `facerec bench --json`.", ""]
    return "\n".join(lines)


def _ratio(old: Any, new: Any) -> str:
    """The ratio now / then as "x0.42", or "" if either is missing or zero."""
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)) or not old:
        return ""
    return f"x{new / old:.2f}"


def compare(ref: dict[str, Any], now: dict[str, Any]) -> str:
    """A Markdown table of *now* against a saved run *ref*, stage by stage.

    Rows present in only one of the two runs are left out; a ratio below 1 means *now*
    is faster (or uses less), except for fps rows, where above 1 is faster.
    """
    rows: list[tuple[str, str, Any, Any]] = []
    for key in now.get("streams", {}):
        old, new = ref.get("streams", {}).get(key), now["streams"][key]
        if old is None:
            continue
        for stage in ("decode", "detect", "align", "embed", "search", "total"):
            label = "work" if stage == "total" else stage
            rows.append((key, f"{label} ms", old["ms"].get(stage), new["ms"].get(stage)))
        # A run without wall time processed frames one after the other: its work was its wall.
        rows.append((key, "wall ms", old.get("wall_ms", old["ms"].get("total")), new.get("wall_ms")))
        rows.append((key, "CPU ms", old.get("cpu_ms"), new.get("cpu_ms")))
        rows.append((key, "processed fps", old.get("processed_fps"), new.get("processed_fps")))
        rows.append((key, "embed ms/face", old.get("embed_ms_per_face"), new.get("embed_ms_per_face")))
    for key, new in now.get("camera", {}).items():
        old = ref.get("camera", {}).get(key)
        if old is not None:
            rows.append((f"camera {key}", "cores busy", old.get("cores_busy"), new.get("cores_busy")))
            if new.get("cores_busy_steady") is not None:
                rows.append((f"camera {key}", "cores busy after 1 s", old.get("cores_busy_steady"),
                             new["cores_busy_steady"]))
    old_tiles = {(t["scene"], t["tiles"]): t for t in ref.get("tiles", [])}
    for t in now.get("tiles", []):
        o = old_tiles.get((t["scene"], t["tiles"]))
        if o is not None:
            label = f"{t['scene']} ({'tiles' if t['tiles'] else 'whole frame'})"
            rows.append((label, "ms per frame", o["ms_per_frame"], t["ms_per_frame"]))
            rows.append((label, "frames until found", o["frames_until_all_found"],
                         t["frames_until_all_found"]))
    for threads, row in now.get("embed_threads", {}).items():
        o = ref.get("embed_threads", {}).get(threads)
        if o is not None:
            rows.append((f"embedding, {threads} thread(s)", "ms per face", o["batch1"], row["batch1"]))
    if "startup" in ref and "startup" in now:
        rows.append(("start-up", "first frame s", ref["startup"]["first_frame_s"],
                     now["startup"]["first_frame_s"]))
        rows.append(("start-up", "peak MB", ref["startup"]["peak_rss_mb"], now["startup"]["peak_rss_mb"]))
    old_search = {s["faces"]: s for s in ref.get("search", [])}
    for srch in now.get("search", []):
        o = old_search.get(srch["faces"])
        if o is not None:
            for k in ("hnsw_ms_p50", "hnsw_ms_p99", "hnsw_recall_at_1"):
                rows.append((f"search {srch['faces']:,}", k, o[k], srch[k]))
    lines = [f"| | | then ({ref.get('date', '?')}) | now ({now.get('date', '?')}) | now / then |",
             "|---|---|---|---|---|"]
    lines += [f"| {what} | {measure} | {'' if old is None else old} | {'' if new is None else new} "
              f"| {_ratio(old, new)} |" for what, measure, old, new in rows]
    loads = f"Load average then: {_load(ref)}; now: {_load(now)}."
    return "\n".join(lines + ["", loads, ""])


def dump(results: dict[str, Any]) -> str:
    """The results as JSON text."""
    return json.dumps(results, indent=2)
