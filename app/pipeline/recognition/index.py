"""Nearest-neighbour search over enrolled faces, and the per-person match decision.

Two search paths share one decision rule:

* **exact**: one matrix-vector product over every stored embedding. For a small gallery
  it is as fast as any index and has perfect recall.
* **HNSW** (hnswlib, cosine): the candidates it returns are re-ranked with the exact
  float32 vectors, so only recall, never the score, depends on the graph.

The HNSW graph is persisted beside the store together with the store *generation* it
reflects and a checksum; a missing, stale or unreadable file is rebuilt from the store,
which is the source of truth.

Matching is per person, not per nearest face: a person's score is the mean of two
measures (`person_score`): the mean of their best ``m`` similarities, where ``m`` grows
with the number of photos they have, and the similarity to their mean face (the
normalised mean of their embeddings). A person enrolled with ten photos therefore cannot
be claimed by a stranger who happens to resemble one bad photo, while a person with one
photo is matched on that photo alone. The mean face adds what several photos agree on:
on the LFW calibration split (people enrolled with 2 photos each), the share named right
at the score that names 1 stranger in 200 rises from 85.6 to 87.2 % with 680 people
enrolled, and from 92.5 to 93.2 % on average over galleries of 2 to 680 people (weights
0.6, 0.75 and 0.9 for the mean face: 93.1, 93.2 and 93.1 %; README.md, "Accuracy on LFW").
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: stale temp files are recognised by their age instead
    fcntl = None  # type: ignore[assignment]

import hnswlib
import numpy as np

from app.pipeline.models import sha256_of
from app.pipeline.storage.vectorfile import fsync_dir
from app.pipeline.types import EMBEDDING_DIM, Gallery, GalleryDelta

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
#: Below this many faces, "auto" search is exact (a brute-force scan is then as fast).
EXACT_SEARCH_LIMIT = 4096
#: Nearest faces fetched per query before grouping by person.
CANDIDATES = 64
#: People (in rank order of their nearest face) whose score is computed per query.
PEOPLE_PER_QUERY = 8
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128


def ef_search(n_faces: int) -> int:
    """HNSW search breadth for a gallery of *n_faces*: wider as the graph grows.

    Measured on synthetic clustered 512-d galleries (``facerec bench``, M=16): ef 128
    keeps recall@1 >= 0.99 up to 100k faces, but at 300k it gives 0.875 and ef 512 is
    needed for 0.99. The breadth therefore grows a little faster than the gallery
    beyond 100k, up to 2048.
    """
    if n_faces <= 100_000:
        return HNSW_EF_SEARCH
    return int(min(2048, round(HNSW_EF_SEARCH * (n_faces / 100_000) ** 1.3 / 32) * 32))

#: Up to this size a delete rebuilds the graph; above it, removed vectors are zeroed in
#: place and marked deleted (a rebuild of a large graph takes minutes).
REBUILD_ON_DELETE_LIMIT = 10_000
#: A temp file of an index save older than this, with no lock on it, is a killed save's.
STALE_TEMP_SECONDS = 3600

#: hnswlib's file header (hnswalg.h, saveIndex): offsetLevel0, max_elements,
#: cur_element_count, size_data_per_element, label_offset, offsetData (size_t each),
#: maxlevel (int), enterpoint (uint32), maxM, maxM0, M (size_t), mult (double),
#: ef_construction (size_t).
_HEADER = struct.Struct("<6Qii3QdQ")


class IndexFileError(ValueError):
    """An index file that is not what the store needs (truncated, other dimension...)."""


def check_index_file(path: Path, count: int) -> None:
    """Prove an hnswlib file is whole, holds *count* elements and has our dimension.

    Reads the header and walks the per-element link lists to the exact end of the file,
    as hnswlib does on load, without trusting it: a file cut short by a full disk, or a
    valid index of another dimension, is refused before hnswlib reads it.

    Raises
    ------
    IndexFileError
        Saying what does not fit.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) != _HEADER.size:
            raise IndexFileError(f"truncated header ({size} bytes)")
        (_, _, n, per_element, label_offset, data_offset, _, _, _, _, _, _, _) = _HEADER.unpack(head)
        dim = (label_offset - data_offset) // 4
        if dim != EMBEDDING_DIM:
            raise IndexFileError(f"dimension {dim}, not {EMBEDDING_DIM}")
        if n != count:
            raise IndexFileError(f"{n} elements, {count} expected")
        start = _HEADER.size + n * per_element
        if start > size:
            raise IndexFileError(f"truncated at {size} bytes")
        f.seek(start)
        # The upper-level link lists: a 4-byte size, then that many bytes, per element.
        # Most elements have none, so this part is ~4 bytes an element: read it at once.
        rest = memoryview(f.read())
    pos, end = 0, len(rest)
    for _ in range(n):
        if pos + 4 > end:
            raise IndexFileError(f"truncated at {size} bytes")
        pos += 4 + int.from_bytes(rest[pos:pos + 4], "little")
    if pos != end:
        raise IndexFileError(f"{size} bytes, {start + pos} expected")


def _save_graph(index: hnswlib.Index, path: Path) -> None:
    """Write the graph to *path* and make it durable (fsync): the step a test may break."""
    index.save_index(os.fsencode(path))  # bytes: see FaceIndex._load
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Weight of the similarity to a person's mean face in their score (the rest goes to the
#: mean of their best `faces_per_decision` similarities); chosen on the LFW calibration split.
MEAN_FACE_WEIGHT = 0.5


def faces_per_decision(n_faces: int) -> int:
    """How many of a person's best similarities are averaged into their score.

    One per four photos, at most five: 1-4 photos -> 1, 5-8 -> 2, 9-12 -> 3, ...
    """
    return max(1, min(5, (n_faces + 3) // 4))


def person_score(sims: np.ndarray, sum_norm: float) -> float:
    """A person's score from a face's similarities to each of their stored faces.

    Parameters
    ----------
    sims : ndarray
        Cosine similarities of the query to each of the person's (unit) embeddings.
    sum_norm : float
        Length of the sum of those embeddings: ``sims.sum() / sum_norm`` is then the
        similarity to their mean face, without computing it.

    Returns
    -------
    float
        ``MEAN_FACE_WEIGHT`` x the similarity to the mean face + the rest x the mean of
        the best `faces_per_decision` similarities; for one face, its similarity.
    """
    m = faces_per_decision(sims.size)
    best = np.partition(sims, sims.size - m)[sims.size - m:] if m < sims.size else sims
    mean_face = float(sims.sum()) / max(sum_norm, 1e-6)
    return MEAN_FACE_WEIGHT * mean_face + (1 - MEAN_FACE_WEIGHT) * float(best.mean())


@dataclass(frozen=True)
class Match:
    """The best person for one query face (before thresholding)."""

    person_id: int | None
    name: str | None
    similarity: float  # the person's aggregated score; -1 when the gallery is empty
    runner_up: float  # the next person's score, -1 if none


NO_MATCH = Match(None, None, -1.0, -1.0)


class FaceIndex:
    """In-memory gallery (exact vectors) plus an hnswlib graph over the same faces.

    Parameters
    ----------
    gallery : Gallery
        Snapshot of the store.
    path : Path or None
        Where the HNSW graph is persisted; None keeps it in memory only.
    search : {"auto", "exact", "hnsw"}
        Which search path to use.
    threads : int
        Threads hnswlib may use to build the graph.
    graph : bool
        Build (or load) the HNSW graph. Without it every query is exact: the stand-in
        for a gallery searched in the database while the database is away.
    """

    def __init__(
        self, gallery: Gallery, path: Path | None = None, search: str = "auto", threads: int = 1,
        *, graph: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.search_mode = search
        self.threads = max(1, threads)
        self.generation = gallery.generation
        self._ids = gallery.face_ids.astype(np.int64, copy=True)
        self._pids = gallery.person_ids.astype(np.int64, copy=True)
        self._vecs = np.ascontiguousarray(gallery.embeddings, dtype=np.float32)
        self._names = dict(gallery.names)
        self._recount()
        self._hnsw: hnswlib.Index | None = None
        self._hnsw_dirty = False  # the vectors changed: the graph file must be rewritten
        self._meta_dirty = False  # only the generation changed (a rename)
        self._digest: str | None = None  # SHA-256 of the graph file on disk
        self._graph = graph
        if not graph:
            self.path = None
            return
        if self.path is not None:
            self._remove_stale_temps()
        if self.path is None or not self._load():
            self._build()
            self.save()

    # -- bookkeeping ------------------------------------------------------------
    def _recount(self) -> None:
        """Rebuild the person -> rows map (after any change to the gallery)."""
        order = np.argsort(self._pids, kind="stable")
        uniq, starts = np.unique(self._pids[order], return_index=True)
        self._rows_of = {int(p): rows for p, rows in zip(uniq, np.split(order, starts[1:]))}
        # Per person, the length of the sum of their embeddings (see `person_score`).
        sums = np.add.reduceat(self._vecs[order], starts, axis=0) if order.size else self._vecs[:0]
        self._sum_norm = dict(zip(uniq.tolist(), np.linalg.norm(sums, axis=1).tolist()))

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def people_count(self) -> int:
        """Number of people with at least one face."""
        return len(self._rows_of)

    def name_of(self, person_id: int | None) -> str | None:
        """The current name of a person, None if unknown or deleted."""
        return self._names.get(person_id) if person_id is not None else None

    def uses_exact(self) -> bool:
        """Whether queries currently scan every vector."""
        if self.search_mode == "exact" or self._hnsw is None:
            return True
        if self.search_mode == "hnsw":
            return False
        return len(self) <= EXACT_SEARCH_LIMIT

    # -- persistence ------------------------------------------------------------
    def _meta_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".json")

    def _load(self) -> bool:
        """Load the persisted graph if it matches the store exactly; else False."""
        assert self.path is not None
        try:
            meta = json.loads(self._meta_path().read_text(encoding="utf-8"))
            if (meta.get("format"), meta.get("generation"), meta.get("count")) != (
                INDEX_FORMAT, self.generation, len(self)):
                log.info("index %s is stale; rebuilding from the store", self.path)
                return False
            if sha256_of(self.path) != meta.get("sha256"):
                log.warning("index %s fails its checksum; rebuilding from the store", self.path)
                return False
            # The checksum only proves the file is the one saved: check it fits this
            # store (dimension, count, whole) before hnswlib, which trusts its input,
            # reads it.
            check_index_file(self.path, int(meta.get("total")))
            index = hnswlib.Index(space="cosine", dim=EMBEDDING_DIM)
            # Bytes, not str: hnswlib takes a UTF-8 std::string, which a data directory
            # whose name is not valid UTF-8 (a surrogate escape) cannot be turned into.
            index.load_index(os.fsencode(self.path), max_elements=max(len(self), 1))
            if index.get_current_count() != meta.get("total"):
                return False
            if not self._labels_match(index):
                return False
        except FileNotFoundError:
            log.info("no index at %s; building it from the store", self.path)
            return False
        except IndexFileError as exc:
            log.warning("index %s does not fit the store (%s); rebuilding from the store",
                        self.path, exc)
            return False
        except (OSError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            log.warning("index %s is unreadable (%s); rebuilding from the store", self.path, exc)
            return False
        index.set_ef(ef_search(len(self)))
        self._hnsw = index
        self._hnsw_total = int(meta["total"])
        self._digest = str(meta["sha256"])
        return True

    def _labels_match(self, index: hnswlib.Index) -> bool:
        """Whether the graph's live labels are exactly the store's faces.

        Every face must be in it; a label the store does not have must be a removed
        face's, marked deleted (a search could otherwise return a face that is gone).
        """
        labels = np.asarray(index.get_ids_list(), np.int64)
        missing = np.setdiff1d(self._ids, labels)
        extra = np.setdiff1d(labels, self._ids)
        live = 0
        for label in extra.tolist():
            try:
                index.mark_deleted(label)  # succeeds only if it was live
                live += 1
            except RuntimeError:
                pass
        if missing.size or live:
            log.warning("index %s does not match the store (%d faces missing, %d faces not in "
                        "the store); rebuilding from the store", self.path, missing.size, live)
            return False
        return True

    def _remove_stale_temps(self) -> None:
        """Delete temp files of saves killed before their rename (each holds a whole graph).

        A save in progress holds a lock on its temp file (`save`), so only abandoned ones
        are removed; without locks (Windows), those older than `STALE_TEMP_SECONDS`.
        """
        assert self.path is not None
        for tmp in self.path.parent.glob(f".{self.path.name}-*.tmp"):
            try:
                if fcntl is None:
                    if time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                        tmp.unlink()
                    continue
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # another process is saving into it
                finally:
                    os.close(fd)
                tmp.unlink()
                log.info("removed %s, left by an interrupted index save", tmp.name)
            except OSError as exc:  # gone meanwhile, or a read-only folder
                log.debug("could not remove %s: %s", tmp, exc)

    def save(self) -> None:
        """Persist the graph and its metadata atomically (unique temp file + rename).

        Only the metadata is rewritten when the vectors did not change (a rename): the
        graph of a large gallery is hundreds of MB. Temp names are unique, so two
        processes saving at once cannot mix up each other's files.
        """
        if self.path is None or self._hnsw is None:
            return
        tmp = lock = None
        try:
            if self._hnsw_dirty or self._digest is None:
                # Written to a locked temp file, made durable and checked whole before it
                # replaces the index: a full disk leaves a short file that must never be
                # recorded as the index (the previous one stays).
                tmp, lock = self._temp_path(locked=True)
                _save_graph(self._hnsw, tmp)
                check_index_file(tmp, self._hnsw_total)
                digest = sha256_of(tmp)
                os.replace(tmp, self.path)
                tmp = None
                self._digest = digest
            meta = {"format": INDEX_FORMAT, "generation": self.generation, "count": len(self),
                    "total": self._hnsw_total, "sha256": self._digest}
            mtmp, _ = self._temp_path()
            try:
                with open(mtmp, "w", encoding="utf-8") as f:
                    f.write(json.dumps(meta))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(mtmp, self._meta_path())
            finally:
                mtmp.unlink(missing_ok=True)
            fsync_dir(self.path.parent)
            self._hnsw_dirty = self._meta_dirty = False
        except (OSError, IndexFileError) as exc:
            # A read-only data dir still recognises; a full disk keeps the previous
            # index (stale now, so it is rebuilt from the store next time).
            log.warning("could not save the index to %s: %s", self.path, exc)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if lock is not None:
                os.close(lock)

    def _temp_path(self, *, locked: bool = False) -> tuple[Path, int | None]:
        """A fresh owner-only temp file beside the index (mkstemp makes it 0600).

        With *locked*, its descriptor is returned holding an exclusive lock, which marks
        the file as in use until it is closed (`_remove_stale_temps`).
        """
        assert self.path is not None
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}-", suffix=".tmp", dir=self.path.parent)
        if locked and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return Path(name), fd
        os.close(fd)
        return Path(name), None

    def _build(self) -> None:
        """Build the HNSW graph from the in-memory vectors."""
        index = hnswlib.Index(space="cosine", dim=EMBEDDING_DIM)
        index.init_index(max_elements=max(len(self), 16), ef_construction=HNSW_EF_CONSTRUCTION,
                         M=HNSW_M)
        if len(self):
            index.add_items(self._vecs, self._ids, num_threads=self.threads)
        index.set_ef(ef_search(len(self)))
        self._hnsw = index
        self._hnsw_total = len(self)
        log.info("built HNSW index over %d faces", len(self))

    # -- changes ----------------------------------------------------------------
    def apply(self, delta: GalleryDelta) -> None:
        """Catch up with the store: the faces added or moved, removed, and renamed people.

        New faces go into the graph; a moved face only changes its person (the graph is
        labelled by face id and its vector is unchanged). Removed faces are dropped; up
        to `REBUILD_ON_DELETE_LIMIT` faces the graph is rebuilt without them, so no trace
        of them stays in the graph file.
        """
        g = delta.faces
        incoming = g.face_ids.astype(np.int64)
        vecs = np.ascontiguousarray(g.embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        known = np.isin(incoming, self._ids)
        gone = np.isin(self._ids, delta.removed_faces)
        keep = ~(gone | np.isin(self._ids, incoming))
        self._ids = np.concatenate([self._ids[keep], incoming])
        self._pids = np.concatenate([self._pids[keep], g.person_ids.astype(np.int64)])
        self._vecs = np.concatenate([self._vecs[keep], vecs]) if len(vecs) else self._vecs[keep]
        if self._ids.size > 1 and np.any(np.diff(self._ids) < 0):  # search needs ids in order
            order = np.argsort(self._ids, kind="stable")
            self._ids, self._pids, self._vecs = self._ids[order], self._pids[order], self._vecs[order]
        self._vecs = np.ascontiguousarray(self._vecs)
        for pid in delta.removed_people:
            self._names.pop(pid, None)
        self._names.update(g.names)
        self._recount()
        self.generation = delta.generation
        new = vecs[~known]
        if gone.any() and self._graph:
            self._hnsw_dirty = True
            if len(self) <= REBUILD_ON_DELETE_LIMIT or self._hnsw is None:
                self._build()
                return
            # Too large to rebuild now: overwrite each removed vector with zeros (hnswlib
            # updates an existing label in place) before marking it deleted, so nothing
            # of a removed face stays in memory or in the file written next.
            labels = set(self._hnsw.get_ids_list())
            zero = np.zeros((1, EMBEDDING_DIM), np.float32)
            for label in delta.removed_faces.tolist():
                if int(label) not in labels:  # added and removed meanwhile
                    continue
                try:
                    self._hnsw.add_items(zero, [int(label)], num_threads=1)
                    self._hnsw.mark_deleted(int(label))
                except RuntimeError as exc:  # already deleted and zeroed before
                    log.debug("face %d: %s", label, exc)
        if len(new) and self._hnsw is not None:
            need = self._hnsw_total + len(new)
            if need > self._hnsw.get_max_elements():
                self._hnsw.resize_index(max(need, 2 * self._hnsw.get_max_elements()))
            self._hnsw.add_items(new, incoming[~known], num_threads=self.threads)
            self._hnsw_total = need
            self._hnsw_dirty = True
        if self._hnsw is not None:
            self._hnsw.set_ef(ef_search(len(self)))
        if not self._hnsw_dirty:
            self._meta_dirty = True  # only names or people changed: rewrite the metadata

    def flush(self) -> None:
        """Save what changed since the last save."""
        if self._hnsw_dirty or self._meta_dirty:
            self.save()

    # -- search -----------------------------------------------------------------
    def candidates(self, queries: np.ndarray, k: int = CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
        """Nearest faces for each query: (rows into the gallery, cosine similarities).

        Returns arrays of shape (q, k') with k' = min(k, gallery size), best first.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        n = len(self)
        k = min(k, n)
        if k == 0:
            return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
        if self.uses_exact():
            sims = q @ self._vecs.T  # (q, n)
            if k < n:
                rows = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                rows = np.broadcast_to(np.arange(n), (q.shape[0], n)).copy()
        else:
            assert self._hnsw is not None
            labels, _ = self._hnsw.knn_query(q, k=k, num_threads=1)
            rows = np.searchsorted(self._ids, labels.astype(np.int64))
            # Re-rank with the exact vectors: the score never depends on the graph.
            sims = np.einsum("qd,qkd->qk", q, self._vecs[rows])
            order = np.argsort(-sims, axis=1)
            return np.take_along_axis(rows, order, 1), np.take_along_axis(sims, order, 1)
        top = np.take_along_axis(sims, rows, 1)
        order = np.argsort(-top, axis=1)
        return np.take_along_axis(rows, order, 1), np.take_along_axis(top, order, 1)

    def faces_of(self, person_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A person's face ids and their (unit) embeddings; empty if they have none."""
        rows = self._rows_of.get(int(person_id))
        if rows is None:
            return np.empty(0, np.int64), np.empty((0, EMBEDDING_DIM), np.float32)
        return self._ids[rows], self._vecs[rows]

    def person_scores(self, query: np.ndarray, exclude_faces: np.ndarray | None = None
                      ) -> list[tuple[float, int]]:
        """(score, person id) of the candidate people for one query, best first.

        The same per-person rule as `match` (`person_score`), over the people among the
        nearest faces, computed without the faces in *exclude_faces* (e.g. the face being
        checked, when it is stored).
        """
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(EMBEDDING_DIM)
        (rows,), _ = self.candidates(q[None], CANDIDATES + (0 if exclude_faces is None
                                                          else len(exclude_faces)))
        skip = np.zeros(len(self), bool) if exclude_faces is None else np.isin(self._ids, exclude_faces)
        scores = []
        for pid in dict.fromkeys(self._pids[rows[~skip[rows]]].tolist()):
            own = self._rows_of[pid]
            if skip[own].any():
                own = own[~skip[own]]
                norm = float(np.linalg.norm(self._vecs[own].sum(axis=0)))
            else:
                norm = self._sum_norm[pid]
            scores.append((person_score(self._vecs[own] @ q, norm), int(pid)))
        scores.sort(reverse=True)
        return scores

    def match(self, queries: np.ndarray) -> list[Match]:
        """The best *person* for each query embedding, by the per-person rule (`person_score`).

        The nearest faces name the candidate people (the first `PEOPLE_PER_QUERY` in rank
        order); each candidate's score is then computed exactly over all of their faces,
        so it does not depend on how many of them the search happened to return.
        """
        rows, _ = self.candidates(queries)
        q_all = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        out = []
        for q, r in zip(q_all, rows):
            if r.size == 0:
                out.append(NO_MATCH)
                continue
            people = list(dict.fromkeys(self._pids[r].tolist()))[:PEOPLE_PER_QUERY]
            scores: list[tuple[float, int]] = []
            for pid in people:
                own = self._rows_of[pid]
                scores.append((person_score(self._vecs[own] @ q, self._sum_norm[pid]), pid))
            scores.sort(reverse=True)
            score, pid = scores[0]
            runner = scores[1][0] if len(scores) > 1 else -1.0
            out.append(Match(pid, self._names.get(pid), score, runner))
        return out
