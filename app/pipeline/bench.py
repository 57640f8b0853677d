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
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.pipeline.index import CANDIDATES, FaceIndex, ef_search
from app.pipeline.store import EMBEDDING_DIM, Gallery

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

def bench_stream(rec: Any, video: Path, frames: int | None = None) -> dict[str, Any]:
    """Run a video through the tracked pipeline; per-stage ms and processed fps."""
    from app.pipeline.sources import VideoSource
    from app.pipeline.tracking import FaceTracker

    stages: dict[str, list[float]] = {k: [] for k in
                                      ("decode", "detect", "align", "embed", "search", "total")}
    embed_per_face: list[float] = []
    faces_seen: list[int] = []
    tracker = FaceTracker()
    with VideoSource(str(video)) as src:
        native_fps = src.fps
        t_start = time.perf_counter()
        n = 0
        while frames is None or n < frames:
            t0 = time.perf_counter()
            frame = src.read()
            if frame is None:
                break
            decode = (time.perf_counter() - t0) * 1e3
            res = rec.process(frame, n, tracker)
            stages["decode"].append(decode)
            for k in ("detect", "align", "embed", "search"):
                stages[k].append(res.timings[k])
            stages["total"].append(decode + res.timings["total"])
            if res.embedded:
                embed_per_face.append(res.timings["embed"] / res.embedded)
            faces_seen.append(len(res.faces))
            n += 1
        wall = time.perf_counter() - t_start
    warm = slice(min(10, n // 4), None)  # skip start-up frames (first embeddings, caches)
    return {
        "frames": n,
        "faces_per_frame": float(np.median(faces_seen[warm])) if faces_seen else 0.0,
        "ms": {k: round(float(np.mean(v[warm])), 2) for k, v in stages.items()},
        "embed_ms_per_face": round(float(np.median(embed_per_face)), 2) if embed_per_face else None,
        "processed_fps": round(n / wall, 1) if wall > 0 else 0.0,
        "native_fps": round(native_fps, 1),
    }


def bench_tiles(rec: Any, portraits: Sequence[np.ndarray], frames: int = 90) -> list[dict[str, Any]]:
    """What the tile scan costs and finds.

    A 1080p scene with five faces 40-80 px high (people across a room), and a 640x480
    close-up of one face (a webcam sitter): faces found and ms per frame, with the
    round-robin tile scan and without it (whole frame only).
    """
    from app.pipeline.tracking import TILES_PER_FRAME, FaceTracker

    heights = (40, 48, 56, 64, 80)
    far = np.full((1080, 1920, 3), 90, np.uint8)
    for i, (p, fh) in enumerate(zip(portraits, heights)):
        side = round(fh * 2.2)  # the portraits are 2.2x the face box
        img = cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)
        x0, y0 = 150 + i * 360, 300 + (i % 2) * 380
        far[y0:y0 + side, x0:x0 + side] = img
    close = scene(portraits[:1], (640, 480), 0)
    out = []
    for label, frame, want in (("1080p, 5 faces 40-80 px", far, 5), ("640x480 close-up", close, 1)):
        for tiles in (TILES_PER_FRAME, 0):
            tracker = FaceTracker(tiles_per_frame=tiles)
            times, found, first_all = [], 0, None
            for i in range(frames):
                t0 = time.perf_counter()
                res = rec.process(frame, i, tracker)
                times.append((time.perf_counter() - t0) * 1e3)
                found = len(res.faces)
                if first_all is None and found >= want:
                    first_all = i
            out.append({"scene": label, "tiles": bool(tiles), "faces": want,
                        "faces_found": found, "frames_until_all_found": first_all,
                        "ms_per_frame": round(float(np.median(times[10:])), 2)})
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


#: The synthetic galleries: ``faces`` (fitted to real embeddings, `app.pipeline.facespace`)
#: or ``uniform`` (identities as uniform random directions: the worst case for a graph).
GENERATORS = ("faces", "uniform")


def synthetic_gallery(n_faces: int, per_person: int = 5, seed: int = 0, kind: str = "uniform",
                      n_queries: int = 500) -> tuple[Gallery, np.ndarray, np.ndarray]:
    """Clustered unit vectors: identities with noisy samples, and held-out probes.

    ``uniform``: centres uniform on the sphere, isotropic noise set so same-identity
    cosines (~0.6) resemble real FaceNet pairs. ``faces``: centres and scatter drawn from
    the statistics of the app's real embeddings (`app.pipeline.facespace`).
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}: one of {', '.join(GENERATORS)}")
    rng = np.random.default_rng(seed)
    people = max(1, n_faces // per_person)
    pids = np.repeat(np.arange(people, dtype=np.int64), per_person)[:n_faces]
    vecs = np.empty((n_faces, EMBEDDING_DIM), np.float32)
    if kind == "faces":
        from app.pipeline.facespace import load_face_space

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
    """Seconds from launching ``facerec watch`` to its first processed frame, and peak RSS."""
    env = {**os.environ, "FACEREC_HOME": str(data_dir)}
    cmd = [sys.executable, "-m", "app", "watch", str(video), "--json", "--max-frames", "30"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - t0
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"first_frame_s": round(first, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def run(photos_dir: Path, sizes: Sequence[int], quick: bool = False,
        progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run every part; return the results as one JSON-able dict."""
    from app.config import Paths, Settings
    from app.pipeline.align import align_face
    from app.pipeline.embedder import FaceEmbedder, default_threads
    from app.pipeline.recognizer import Recognizer

    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        rec = Recognizer.open(Paths(tmpd / "data"), Settings())
        with rec:
            portraits = face_portraits(photos_dir, rec.detector, 5)
            # Enroll three of the five so search has a gallery and names are decided.
            for p, name in zip(portraits[:3], ("A", "B", "C")):
                rec.enroll(name, [rec.enroll_face(p).face])
            progress("embedding threads")
            crop = align_face(portraits[0], rec.detector.detect(portraits[0])[0])
            results["embed_threads"] = bench_threads(
                lambda n: FaceEmbedder(n), crop, sorted({1, default_threads()}))
            streams = {}
            n_frames = 60 if quick else 240
            for size in ((640, 480), (1280, 720)):
                for faces in (1, 5):
                    key = f"{size[0]}x{size[1]}_{faces}face"
                    progress(f"stream {key}")
                    video = write_video(tmpd / f"{key}.avi", portraits[:faces], size, n_frames)
                    row = bench_stream(rec, video)
                    row["untracked"] = bench_untracked(rec, scene(portraits[:faces], size, 0),
                                                       5 if quick else 20)
                    streams[key] = row
            results["streams"] = streams
            progress("small faces: tiles on and off")
            results["tiles"] = bench_tiles(rec, portraits, 45 if quick else 90)
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
    return results


def to_markdown(r: dict[str, Any]) -> str:
    """BENCHMARKS.md from the results of `run`."""
    m = r["machine"]
    lines = [
        "# facerec benchmarks",
        "",
        f"Measured by `facerec bench` on {r['date']}: **{m['cores']} cores**, {m['cpu']}, "
        f"Python {m['python']}, {m['system']}. Figures are from one run on a shared machine; "
        "read them as ratios and orders of magnitude.",
        "",
        "## Pipeline stages (ms per frame, tracked, as the app runs)",
        "",
        "Synthetic MJPG streams of shared photos (1 or 5 different people); 3 of the 5 are "
        "enrolled. *embed/face* is the time of one embedding; the tracker embeds a face when its "
        "track starts, when it grows or sharpens, and every 8 frames, so *embed* per frame is "
        "far below faces x embed/face.",
        "",
        "| stream | faces | decode | detect | align | embed | search | **total** | embed/face "
        "| processed fps | native fps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in r["streams"].items():
        ms = s["ms"]
        lines.append(
            f"| {key.split('_')[0]} | {s['faces_per_frame']:.0f} | {ms['decode']} | {ms['detect']} | "
            f"{ms['align']} | {ms['embed']} | {ms['search']} | **{ms['total']}** | "
            f"{s['embed_ms_per_face']} | {s['processed_fps']} | {s['native_fps']} |")
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
    lines += [
        "",
        "## Small faces: the tile scan",
        "",
        "A 1080p frame with five faces 40-80 px high, and a 640x480 webcam close-up, run as a "
        "stream with 4 tiles per frame (round robin, plus a region around each small tracked "
        "face) and with the whole-frame pass only:",
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


def dump(results: dict[str, Any]) -> str:
    """The results as JSON text."""
    return json.dumps(results, indent=2)
