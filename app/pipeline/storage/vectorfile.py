"""A flat file of face vectors: how a workstation keeps its copy of a large shared gallery.

A fresh copy of a shared gallery used to write every vector as a 2 KB SQLite row: a
million faces made 3.9 GB of SQLite (one row per 4 KB page) and three minutes of row
writes. The vectors of a full copy now go, in the order the database sends them, into
one file written front to back; the copy's SQLite file keeps the rows (ids, people,
change stamps) with an empty embedding, which means "in the vector file". Faces added
later arrive in the incremental sync with their vectors in their rows, as before.

Layout (little-endian): a 4 KiB header (``MAGIC``, face count, dimension), the vectors
(float32, one row per face), then the face ids (int64) in the same order.

Crash safety: a file is written under a temporary name (``.part``), flushed to disk and
only then renamed, inside the SQLite transaction that points the copy at it; so the
copy's rows and its vector file change together, and a half-written file is never used.
Files no transaction points at are removed afterwards. A removed face's vector is
overwritten with zeros in place (the copy's counterpart of SQLite's ``secure_delete``);
a reader treats a zero vector as a face removed since its snapshot.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import StoreError
from app.pipeline.types import EMBEDDING_DIM

log = logging.getLogger(__name__)

MAGIC = b"FACEREC-VECTORS1"
HEADER = 4096
SUFFIX = ".vec"
PART = ".part"


class VectorWriter:
    """Writes one vector file sequentially: `append` blocks, then `finish`.

    Parameters
    ----------
    folder : Path
        Where the file goes (beside the copy's SQLite file).
    stem : str
        The copy's name; the file is ``<stem>.<random>.vec``.
    """

    def __init__(self, folder: Path, stem: str) -> None:
        self.name = f"{stem}.{uuid.uuid4().hex[:12]}{SUFFIX}"
        self.final = Path(folder) / self.name
        self.part = self.final.with_name(f"{self.name}.{os.getpid()}{PART}")
        fd = os.open(self.part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        self._f = os.fdopen(fd, "wb")
        self._f.write(b"\0" * HEADER)
        self._ids: list[np.ndarray] = []
        self.count = 0

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add faces (ids and their unit vectors, in the same order)."""
        vecs = np.ascontiguousarray(vectors, dtype="<f4")
        if vecs.ndim != 2 or vecs.shape[1] != EMBEDDING_DIM or len(vecs) != len(ids):
            raise ValueError("vectors must be (n, EMBEDDING_DIM) with one id each")
        self._f.write(vecs.tobytes())
        self._ids.append(np.asarray(ids, dtype="<i8"))
        self.count += len(vecs)

    def finish(self) -> Path:
        """Write the ids and the header, and flush to disk; return the ``.part`` path.

        The caller renames it to `final` (`install`) when its transaction commits.
        """
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, "<i8")
        self._f.write(ids.astype("<i8").tobytes())
        self._f.seek(0)
        self._f.write(MAGIC + np.array([self.count, EMBEDDING_DIM], "<u8").tobytes())
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return self.part

    def install(self) -> str:
        """Rename the finished file to its final name; return that name."""
        os.replace(self.part, self.final)
        fsync_dir(self.final.parent)
        return self.name

    def discard(self) -> None:
        """Remove the unfinished or uninstalled file."""
        if not self._f.closed:
            self._f.close()
        for path in (self.part, self.final):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


class VectorFile:
    """A finished vector file, mapped read-only (or read-write to zero removed faces)."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(MAGIC) + 16)
        except OSError as exc:
            raise StoreError(f"cannot read the gallery copy's vectors {self.path}: "
                             f"{exc.strerror or exc}") from None
        if len(head) < len(MAGIC) + 16 or head[:len(MAGIC)] != MAGIC:
            raise StoreError(f"the gallery copy's vectors {self.path} are damaged")
        n, dim = (int(x) for x in np.frombuffer(head[len(MAGIC):], "<u8"))
        if dim != EMBEDDING_DIM or self.path.stat().st_size != HEADER + n * (4 * dim + 8):
            raise StoreError(f"the gallery copy's vectors {self.path} are damaged")
        mode: Any = "r+" if writable else "r"
        self.vectors: np.ndarray = np.memmap(self.path, np.dtype("<f4"), mode, HEADER, (n, dim)) \
            if n else np.zeros((0, dim), "<f4")
        self.ids = np.array(np.memmap(self.path, "<i8", "r", HEADER + n * dim * 4, (n,))) if n else \
            np.zeros(0, "<i8")
        self._order = np.argsort(self.ids, kind="stable")

    def rows_of(self, face_ids: np.ndarray) -> np.ndarray:
        """Row of each face id in the file (-1 where the file does not hold it)."""
        ids = np.asarray(face_ids, np.int64)
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.searchsorted(self.ids, ids, sorter=self._order)
        pos = np.minimum(pos, len(self.ids) - 1)
        rows = self._order[pos]
        return np.where(self.ids[rows] == ids, rows, -1)

    def zero(self, face_ids: np.ndarray) -> int:
        """Overwrite the vectors of these faces with zeros, on disk; return how many."""
        rows = self.rows_of(face_ids)
        rows = np.sort(rows[rows >= 0])
        if len(rows):
            self.vectors[rows] = 0.0
            if isinstance(self.vectors, np.memmap):
                self.vectors.flush()
        return len(rows)


def fsync_dir(folder: Path) -> None:
    """Make a rename in *folder* durable (where the platform allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process *pid* still runs (so a temp file it made may still be in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_unused(folder: Path, stem: str, keep: str | None, zero_ids: np.ndarray | None = None) -> None:
    """Delete this copy's vector files other than *keep*, and stale unfinished ones.

    Call it inside the copy's write transaction (so no other process is between
    installing a file and committing it). *zero_ids*: faces no longer in the gallery
    whose vectors are overwritten with zeros before their file is deleted.
    """
    for path in Path(folder).glob(f"{stem}.*"):
        name = path.name
        if name.endswith(PART):
            pid = name[:-len(PART)].rsplit(".", 1)[-1]
            if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
                continue  # another process is writing it
        elif not name.endswith(SUFFIX) or name == keep:
            continue
        try:
            if zero_ids is not None and len(zero_ids) and name.endswith(SUFFIX):
                VectorFile(path, writable=True).zero(zero_ids)
        except (StoreError, OSError, ValueError) as exc:
            log.warning("could not clear %s before removing it: %s", path, exc)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
