"""``facerec bench --store URL``: a shared gallery in PostgreSQL + pgvector, measured.

For each gallery size (synthetic clustered faces, as in `app.pipeline.tools.bench`):

1. **Load**: the faces are written with one binary ``COPY`` and pgvector's HNSW index is
   built (m 16, ef_construction 64, one parallel worker).
2. **Search in the database**: `PostgresStore.match` (the per-person rule in SQL) for
   500 held-out probes: latency p50/p99 over a Unix socket, and identity accuracy
   against the probe's true identity and against the exact per-person answer
   (`FaceIndex` scanning every vector).
3. **Fresh cache sync**: a workstation with an empty data directory opens the shared
   gallery: seconds until its mirror holds every face, then until its index is ready
   (a local HNSW graph up to `DB_SEARCH_ABOVE` faces, database search above).
4. **Propagation** (first size only): an enrollment committed on one connection, until a
   running workstation's mirror holds it (LISTEN/NOTIFY).

The database must be empty or one this benchmark filled before: it is overwritten.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import StoreError
from app.pipeline.models import models_dir, sha256_of
from app.pipeline.recognition.align import EMBEDDING_VERSION
from app.pipeline.recognition.index import FaceIndex
from app.pipeline.storage.pgstore import (
    PG_HNSW_EF_CONSTRUCTION,
    PG_HNSW_M,
    PG_INDEX_KIND,
    PostgresStore,
    pg_ef_search,
)
from app.pipeline.tools.bench import SEARCH_REPEATS, machine, percentile, synthetic_gallery
from app.pipeline.tools.facespace import FACE_SPACE_FILE, load_face_space
from app.pipeline.types import EMBEDDING_DIM, NewFace, name_key

#: ef_search values swept at each size (on the first `SWEEP_PROBES` probes, 2 passes).
EF_SWEEP = (40, 100, 200, 400)
SWEEP_PROBES = 200
#: ``maintenance_work_mem`` for the index build: above a 1M graph's size, so it is built
#: in memory (pgvector warns and slows down when the graph outgrows it).
BUILD_MEMORY = "6GB"

log = logging.getLogger(__name__)

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"


def _copy_faces(pg: PostgresStore, ids: np.ndarray, pids: np.ndarray, vecs: np.ndarray) -> None:
    """All faces in one binary COPY, the rows laid out by numpy (no per-row Python).

    Each face is marked as made by this embedding version: the search takes no other.
    """
    version = EMBEDDING_VERSION.encode()
    row = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("pid", ">i8"),
                    ("l3", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", EMBEDDING_DIM),
                    ("l4", ">i4"), ("created", ">f8"), ("l5", ">i4"), ("changed", ">i8"),
                    ("l6", ">i4"), ("embedder", f"S{len(version)}")])
    conn = pg._conn
    with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY faces (id, person_id, embedding, created, changed, embedder) FROM STDIN "
            "(FORMAT BINARY)") as cp:
        cp.write(_COPY_HEADER)
        for s in range(0, ids.size, 50_000):
            e = min(ids.size, s + 50_000)
            rows = np.zeros(e - s, row)
            rows["nf"], rows["l1"], rows["l2"], rows["l4"], rows["l5"] = 6, 8, 8, 8, 8
            rows["l3"], rows["dim"] = 4 + 4 * EMBEDDING_DIM, EMBEDDING_DIM
            rows["l6"], rows["embedder"] = len(version), version
            rows["id"], rows["pid"], rows["vec"] = ids[s:e], pids[s:e], vecs[s:e]
            rows["created"], rows["changed"] = time.time(), 1
            cp.write(rows.tobytes())
        cp.write(b"\xff\xff")


def load(pg: PostgresStore, n_faces: int, generator: str = "faces", index: str = PG_INDEX_KIND,
         *, reuse: bool = True) -> dict[str, Any]:
    """Replace the database's gallery with *n_faces* synthetic faces; time the HNSW build.

    The gallery is deterministic (seeded), so a database that already holds this very
    gallery and index (a previous run, noted in ``meta``) is kept when *reuse* is set,
    with the load and build times measured when it was made: a 1M build takes half an
    hour on 2 cores.
    """
    gallery, queries, q_ids = synthetic_gallery(n_faces, kind=generator)
    stats = sha256_of(models_dir() / FACE_SPACE_FILE)[:12] if generator == "faces" else ""
    tag = json.dumps({"generator": generator, "faces": n_faces, "embedder": EMBEDDING_VERSION,
                      "index": index, "m": PG_HNSW_M,
                      "ef_construction": PG_HNSW_EF_CONSTRUCTION, "stats": stats}, sort_keys=True)
    out = {"gallery": gallery, "queries": queries, "q_ids": q_ids + 1}
    conn = pg._conn
    row = conn.execute("SELECT value FROM meta WHERE key = 'bench'").fetchone()
    if reuse and row and row[0].startswith("{"):
        kept = json.loads(row[0])
        if kept.pop("tag", None) == tag and pg.face_count() == n_faces:
            return {**out, **kept, "reused": True}
    people = int(gallery.person_ids.max()) + 1
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute("DROP INDEX IF EXISTS faces_embedding")
        conn.execute("TRUNCATE sightings, faces, people, removed")
        with conn.cursor() as cur, cur.copy(
                "COPY people (id, name, key, created, changed) FROM STDIN") as cp:
            buf = io.StringIO()
            for p in range(1, people + 1):
                buf.write(f"{p}\tp{p}\t{name_key(f'p{p}')}\t0\t1\n")
            cp.write(buf.getvalue())
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'generation'")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'history_from'")
        conn.execute("INSERT INTO meta(key, value) VALUES ('bench', '1') "
                     "ON CONFLICT (key) DO UPDATE SET value = '1'")
    # Person ids start at 1 in the database (the synthetic ones at 0).
    _copy_faces(pg, gallery.face_ids, gallery.person_ids + 1, gallery.embeddings)
    for table in ("people", "faces"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"(SELECT max(id) FROM {table}))")
    copy_s = time.perf_counter() - t0
    conn.execute("VACUUM ANALYZE faces")
    build_s = pg.rebuild_vector_index(kind=index, workers=1, memory=BUILD_MEMORY)
    size = conn.execute("SELECT pg_relation_size('faces_embedding'), pg_total_relation_size('faces')"
                        ).fetchone()
    made = {"generator": generator, "index": index, "copy_s": round(copy_s, 1),
            "build_s": round(build_s, 1), "build_load": round(os.getloadavg()[0], 1),
            "index_mb": round(size[0] / 2**20), "table_mb": round(size[1] / 2**20)}
    conn.execute("UPDATE meta SET value = %s WHERE key = 'bench'", (json.dumps({**made, "tag": tag}),))
    return {**out, **made, "reused": False}


def _timed_matches(pg: PostgresStore, queries: np.ndarray, names: dict[int, str], ef: int,
                   repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's fastest of *repeats* passes (ms) and the person it was matched to."""
    best = np.full(len(queries), np.inf)
    found = np.zeros(len(queries), np.int64)
    for _ in range(repeats):
        for k, q in enumerate(queries):
            t = time.perf_counter()
            m = pg.match(q[None], names, ef=ef)[0]
            best[k] = min(best[k], (time.perf_counter() - t) * 1e3)
            found[k] = m.person_id or 0
    return best, found


def bench_db_search(pg: PostgresStore, loaded: dict[str, Any], threads: int) -> dict[str, Any]:
    """Latency and accuracy of the per-person rule in the database, and an ef_search sweep.

    Accuracy against the probe's true identity, and against the same rule computed
    exactly over every vector (what the index should reproduce: the exact rule's own
    mistakes belong to the embeddings, not to the index).
    """
    gallery, queries, q_ids = loaded["gallery"], loaded["queries"], loaded["q_ids"]
    names = {int(p) + 1: f"p{int(p) + 1}" for p in np.unique(gallery.person_ids)}
    exact = FaceIndex(gallery, None, "exact", threads, graph=False)
    truth = np.array([(m.person_id or 0) + 1 for m in exact.match(queries)])
    del exact
    try:  # the index and the table in PostgreSQL's buffers, as in service (pg_prewarm)
        with pg._errors():
            pg._conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            pg._conn.execute("SELECT pg_prewarm('faces_embedding'), pg_prewarm('faces')")
        warmed = True
    except StoreError as exc:  # not installed, or this role may not create it
        log.warning("search measured without pg_prewarm: %s", exc)
        warmed = False
    first_pass = []
    for q in queries[:100]:  # a single pass as well: scheduler pauses and all
        t = time.perf_counter()
        pg.match(q[None], names)
        first_pass.append((time.perf_counter() - t) * 1e3)
    ef = pg_ef_search(len(gallery.face_ids))  # as a workstation searches this gallery
    best, got = _timed_matches(pg, queries, names, ef, SEARCH_REPEATS)
    sweep = []
    for breadth in EF_SWEEP:
        t_ef, g_ef = _timed_matches(pg, queries[:SWEEP_PROBES], names, breadth, 2)
        sweep.append({"ef_search": breadth, "p50_ms": round(percentile(t_ef.tolist(), 50), 2),
                      "p99_ms": round(percentile(t_ef.tolist(), 99), 2),
                      "accuracy_vs_exact": round(float((g_ef == truth[:SWEEP_PROBES]).mean()), 4),
                      "accuracy_vs_identity": round(float((g_ef == q_ids[:SWEEP_PROBES]).mean()), 4)})
    return {"ef_search": ef, "index": pg.index_kind(),
            "p50_ms": round(percentile(best.tolist(), 50), 2),
            "p99_ms": round(percentile(best.tolist(), 99), 2),
            "single_pass_p99_ms": round(percentile(first_pass, 99), 2),
            "accuracy_vs_identity": round(float((got == q_ids).mean()), 4),
            "accuracy_vs_exact": round(float((got == truth).mean()), 4),
            "exact_vs_identity": round(float((truth == q_ids).mean()), 4), "sweep": sweep,
            "prewarmed": warmed}


def bench_fresh_sync(url: str, threads: int) -> dict[str, Any]:
    """A workstation with an empty data directory: its copy made, then its index ready.

    The copy is the SQLite rows plus the vector file (`app.pipeline.storage.vectorfile`).
    """
    from app.config import Settings
    from app.pipeline.recognition.recognizer import make_index
    from app.pipeline.storage.shared import SharedStore

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = SharedStore(url, Path(tmp), background=False)
        store.sync()
        sync_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        index = make_index(store, store.index_path, Settings(), threads)
        index_s = time.perf_counter() - t1
        kind = type(index).__name__
        folder = store.mirror_path.parent
        sqlite_mb = sum(p.stat().st_size for p in folder.glob(store.mirror_path.name + "*")) / 2**20
        vectors_mb = sum(p.stat().st_size for p in folder.glob("*.vec")) / 2**20
        store.close()
    return {"mirror_sync_s": round(sync_s, 1), "index_s": round(index_s, 1), "index": kind,
            "total_s": round(sync_s + index_s, 1), "sqlite_mb": round(sqlite_mb),
            "vectors_mb": round(vectors_mb)}


def bench_propagation(url: str, rounds: int = 10) -> dict[str, Any]:
    """Seconds from a commit on one connection until another workstation's mirror has it."""
    from app.pipeline.storage.shared import SharedStore

    rng = np.random.default_rng(5)
    delays = []
    with tempfile.TemporaryDirectory() as tmp, PostgresStore(url) as writer:
        watcher = SharedStore(url, Path(tmp))
        try:
            for k in range(rounds):
                before = watcher.generation
                t0 = time.perf_counter()
                writer.add_faces(f"newcomer {k}", [NewFace(rng.standard_normal(EMBEDDING_DIM))])
                while watcher.generation == before and time.perf_counter() - t0 < 10:
                    time.sleep(0.002)
                delays.append(time.perf_counter() - t0)
        finally:
            watcher.close()
            # Leave the gallery as `load` made it, so that a later run can keep it (a
            # plain DELETE: the store's removal would VACUUM the whole table each time).
            writer._conn.execute("DELETE FROM people WHERE name LIKE 'newcomer %'")
    return {"rounds": rounds, "median_s": round(float(np.median(delays)), 3),
            "max_s": round(float(np.max(delays)), 3)}


def run(url: str, sizes: Sequence[int], threads: int,
        progress: Callable[[str], None] = lambda s: None, generator: str = "faces",
        index: str = PG_INDEX_KIND) -> dict[str, Any]:
    """Every part at every size; the results as one JSON-able dict."""
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "load_average": os.getloadavg(), "sizes": [],
                               "generator": generator, "index": index}
    if generator == "faces":
        space = load_face_space()
        results["face_space"] = {"embedding_version": space.embedding_version,
                                 "source": space.source}
        if space.embedding_version != EMBEDDING_VERSION:
            log.warning("the face statistics were fitted to %s embeddings, the app makes %s: "
                        "refit them (python -m app.pipeline.tools.facespace)", space.embedding_version,
                        EMBEDDING_VERSION)
    with PostgresStore(url) as pg:
        if not pg.can_enroll:
            raise StoreError(f"bench needs a role that may change {pg.label}")
        bench_db = pg._read("SELECT value FROM meta WHERE key = 'bench'")
        if pg.people() and not bench_db:
            raise StoreError(f"{pg.label} holds a gallery: bench overwrites it, so it needs an "
                             "empty database (or one it filled before)")
        results["server"] = pg._read("SELECT version()")[0][0].split(",")[0]
        results["pgvector"] = pg._read(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'")[0][0]
        for i, n in enumerate(sizes):
            progress(f"shared gallery: loading {n} faces ({generator}) and building the "
                     f"HNSW index ({index})")
            loaded = load(pg, n, generator, index)
            row: dict[str, Any] = {"faces": n, **{k: v for k, v in loaded.items()
                                                 if k not in ("gallery", "queries", "q_ids")}}
            progress(f"shared gallery: search in the database, {n} faces")
            row["search"] = bench_db_search(pg, loaded, threads)
            del loaded
            progress(f"shared gallery: fresh cache sync, {n} faces")
            row["sync"] = bench_fresh_sync(url, threads)
            if i == 0:
                progress("shared gallery: propagation between workstations")
                row["propagation"] = bench_propagation(url)
            results["sizes"].append(row)
    results["load_average_after"] = os.getloadavg()
    results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


def to_markdown(r: dict[str, Any]) -> str:
    """The shared-gallery section of BENCHMARKS.md."""
    m = r["machine"]
    gen = r.get("generator", "uniform")
    what = ("faces drawn from the statistics of the app's real embeddings "
            f"(`app.pipeline.tools.facespace`, fitted to {r['face_space']['source']}, "
            f"{r['face_space']['embedding_version']})" if gen == "faces" else
            "identities as uniform random directions (the worst case for a graph index)")
    lines = [
        f"### {r['date']}: generator `{gen}`, index `{r.get('index', 'vector')}`",
        "",
        f"Measured by `facerec bench --store URL --generator {gen}` on {r['date']}: {m['cores']} "
        f"cores, {r['server']}, pgvector {r['pgvector']}, over a Unix socket on the same machine; "
        f"load average {r['load_average'][0]:.1f} before, {r['load_average_after'][0]:.1f} after. "
        f"Synthetic galleries of {what}: 5 faces per identity, 500 held-out probes. HNSW "
        f"m {PG_HNSW_M}, ef_construction {PG_HNSW_EF_CONSTRUCTION} on `{r.get('index', 'vector')}`, "
        "built after the load with one parallel worker; searched with the per-person rule in SQL "
        "(64 candidates, 8 people, each scored exactly over all their faces). Latency: each "
        f"probe's fastest of {SEARCH_REPEATS} passes, and the p99 of a single pass. *Agrees with "
        "exact*: the same answer as the rule over every vector (the index's job); *identity*: the "
        "probe's true person (also limited by the embeddings: see *exact*).",
        "",
        "| faces | load (COPY) | index build | index size | ef_search | p50 | p99 | single-pass p99 "
        "| agrees with exact | identity | exact rule: identity | copy made | index ready "
        "| fresh sync total | copy on disk |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        q, y = s["search"], s["sync"]
        build = f"{s['build_s']} s" + (f" (load {s['build_load']})" if "build_load" in s else "")
        lines.append(
            f"| {s['faces']:,} | {s['copy_s']} s | {build} | {s['index_mb']} MB | "
            f"{q['ef_search']} | {q['p50_ms']} ms | {q['p99_ms']} ms | {q['single_pass_p99_ms']} ms | "
            f"{q['accuracy_vs_exact']} | {q['accuracy_vs_identity']} | {q['exact_vs_identity']} | "
            f"{y['mirror_sync_s']} s | {y['index_s']} s ({y['index']}) | {y['total_s']} s | "
            f"{y.get('sqlite_mb', y.get('mirror_mb'))} MB SQLite + {y.get('vectors_mb', 0)} MB vectors |")
    lines += ["", f"ef_search swept on {SWEEP_PROBES} probes (fastest of 2 passes):", "",
              "| faces | ef_search | p50 | p99 | agrees with exact | identity |", "|---|---|---|---|---|---|"]
    for s in r["sizes"]:
        for e in s["search"].get("sweep", []):
            lines.append(f"| {s['faces']:,} | {e['ef_search']} | {e['p50_ms']} ms | {e['p99_ms']} ms | "
                         f"{e['accuracy_vs_exact']} | {e['accuracy_vs_identity']} |")
    prop = next((s["propagation"] for s in r["sizes"] if "propagation" in s), None)
    if prop:
        lines += ["", f"Enrollment on one workstation until another's mirror holds it (LISTEN/NOTIFY), "
                      f"{prop['rounds']} rounds: median {prop['median_s']} s, max {prop['max_s']} s "
                      "(a running window or `watch` then picks it up at its next gallery check, "
                      "every 0.5 s)."]
    lines += ["", f"Peak memory of the benchmark process: {r['bench_peak_rss_mb']} MB.", ""]
    return "\n".join(lines)
