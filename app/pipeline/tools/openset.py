"""Open-set identification: enrolled people and strangers, as the app meets them.

A gallery folder (one subfolder of photos per person) is enrolled through the store, as
``facerec import`` does, into a temporary data directory; probe photos of enrolled people
("known") and of people never enrolled ("strangers") are then identified by the
Recognizer's own decision rule. Galleries of several sizes are drawn from the enrolled
people, so the effect of the number of people on false accepts is measured directly.

Each photo is embedded once, by the same steps the app takes (enrollment: the largest
face as `Recognizer.prepare_file` stores it; a probe: the largest face as
`Recognizer.process` sees it), and the embeddings are reused for every gallery drawn:
identification itself is deterministic, so this gives exactly the app's answers.

The same machinery calibrates the decision rule (`calibrate`): strangers' decision scores
against galleries of many sizes, on a split of people disjoint from the one reported.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import FacerecError, ImageError, NoFaceError
from app.pipeline.imageio import display_name, load_image, person_folders
from app.pipeline.models import EMBEDDER
from app.pipeline.recognition.align import EMBEDDING_VERSION
from app.pipeline.recognition.decision import TAIL_FRACTION, Calibration
from app.pipeline.recognition.detector import FaceDetector
from app.pipeline.recognition.embedder import FaceEmbedder, person_balanced_mean
from app.pipeline.recognition.index import FaceIndex, Match
from app.pipeline.recognition.recognizer import Recognizer, subject_face_embedding
from app.pipeline.storage.store import FaceStore
from app.pipeline.tools.evaluate import tar_at_far
from app.pipeline.types import NewFace

log = logging.getLogger(__name__)

#: Stranger false-accept rates at which rank-1 identification is reported (BLUFR's DIR@FAR).
DIR_FARS = (0.001, 0.01, 0.1)
#: Gallery sizes drawn for calibration (those above the gallery's size are skipped; the
#: whole gallery is always one of them).
CALIBRATION_SIZES = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
#: Runner-up weights tried by `calibrate`.
RUNNER_UP_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
#: At most this many galleries are drawn per size.
MAX_DRAWS = 100

Progress = Callable[[int, int], None]


@dataclass
class Probes:
    """Embeddings of one open-set data set (gallery and probes), computed once."""

    gallery: dict[str, list[NewFace]]
    known: list[tuple[str, np.ndarray]]  # (person, embedding)
    strangers: list[np.ndarray]
    skipped: list[str] = field(default_factory=list)

    @property
    def known_people(self) -> list[str]:
        """Enrolled people with at least one known probe, in gallery order."""
        have = {p for p, _ in self.known}
        return [p for p in self.gallery if p in have]


def probe_embedding(rec: Recognizer, path: Path) -> np.ndarray:
    """The largest face of a probe photo, embedded as `Recognizer.process` embeds it.

    Raises
    ------
    ImageError, NoFaceError
        Naming the file.
    """
    rgb = load_image(path)
    dets = rec.detect(rgb)
    if not dets:
        raise NoFaceError(f"{display_name(path)}: no face found")
    _, emb = rec.embed_detections(rgb, dets)
    vec: np.ndarray = emb[0]  # largest first, embedded in one batch with the others
    return vec


def embed_probes(rec: Recognizer, gallery_dir: Path, known_dir: Path, strangers_dir: Path,
                 progress: Progress | None = None) -> Probes:
    """Embed a gallery folder and two probe folders (one subfolder per person each).

    Photos that cannot be read or hold no face are skipped and listed.

    Raises
    ------
    FacerecError
        If a folder is missing or empty, or a known probe's person has no gallery folder.
    """
    folders = {kind: person_folders(Path(d)) for kind, d in
               (("gallery", gallery_dir), ("known", known_dir), ("strangers", strangers_dir))}
    for kind, found in folders.items():
        if not found.photos:
            raise FacerecError(f"the {kind} folder has no photos (expected one subfolder per person)")
    gallery_names = {n for n, _ in folders["gallery"].photos}
    missing = sorted({n for n, _ in folders["known"].photos} - gallery_names)
    if missing:
        raise FacerecError(f"known probes of {len(missing)} people with no gallery folder "
                           f"(e.g. {missing[0]!r}): known probes must be of enrolled people")
    clash = sorted({n for n, _ in folders["strangers"].photos} & gallery_names)
    if clash:
        raise FacerecError(f"{len(clash)} strangers are in the gallery (e.g. {clash[0]!r})")
    out = Probes({}, [], [], [s for f in folders.values() for s in f.skipped])
    total = sum(len(f.photos) for f in folders.values())
    done = 0
    for kind, found in folders.items():
        for name, path in found.photos:
            try:
                if kind == "gallery":
                    out.gallery.setdefault(name, []).append(rec.prepare_file(path).face)
                elif kind == "known":
                    out.known.append((name, probe_embedding(rec, path)))
                else:
                    out.strangers.append(probe_embedding(rec, path))
            except (ImageError, NoFaceError) as exc:
                out.skipped.append(str(exc))
            done += 1
            if progress:
                progress(done, total)
    out.known = [(n, e) for n, e in out.known if n in out.gallery]
    if not out.gallery or not out.known or not out.strangers:
        raise FacerecError("too few usable photos: need a gallery face, a known probe and a stranger")
    return out


@contextmanager
def gallery_recognizer(rec: Recognizer, people: Sequence[tuple[str, Sequence[NewFace]]],
                       workdir: Path) -> Iterator[Recognizer]:
    """A Recognizer sharing *rec*'s models, over a fresh store holding only *people*.

    They are enrolled through the store in one transaction, as ``facerec import`` does.
    """
    folder = Path(tempfile.mkdtemp(prefix="gallery-", dir=workdir))
    store = FaceStore(folder / "faces.db")
    try:
        index = FaceIndex(store.gallery(), None, rec.settings.search, rec.embedder.threads)
        sub = Recognizer(rec.detector, rec.embedder, store, index, rec.settings, rec.model_dir,
                         rec.rule.calibration)
        sub.enroll_many(people)
        yield sub
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def draws(n_people: int, n_known_people: int, size: int, limit: int = MAX_DRAWS) -> int:
    """Galleries drawn at one size: enough for each person with probes to be in about one."""
    if size >= n_people:
        return 1
    return max(1, min(limit, math.ceil(n_known_people / size)))


def draw_galleries(probes: Probes, size: int, count: int, rng: np.random.Generator
                   ) -> list[list[str]]:
    """*count* galleries of *size* people (seeded).

    People with known probes come first: they are shuffled and dealt out in turn, so
    that each is in at most one gallery of a size until all have been dealt; a gallery
    larger than them all is filled up with other enrolled people.
    """
    names = list(probes.gallery)
    if size >= len(names):
        return [names]
    known = probes.known_people
    others = [n for n in names if n not in set(known)]
    order = [known[i] for i in rng.permutation(len(known))]
    rank = {n: i for i, n in enumerate(names)}
    out = []
    for k in range(count):
        if size <= len(known):
            start = (k * size) % len(known)
            chosen = (order + order)[start:start + size]
        else:
            chosen = known + [others[i] for i in rng.choice(len(others), size - len(known),
                                                            replace=False)]
        out.append(sorted(chosen, key=rank.__getitem__))
    return out


@dataclass
class Scores:
    """Evidence about every probe against one or more galleries of one size."""

    size: int
    galleries: int = 0
    known_correct: list[bool] = field(default_factory=list)  # best candidate is the person
    known: list[Any] = field(default_factory=list)  # Decision or Match per known probe
    strangers: list[Any] = field(default_factory=list)  # per stranger probe


def score_galleries(rec: Recognizer, probes: Probes, sizes: Sequence[int], seed: int,
                    workdir: Path, *, decide: bool, progress: Progress | None = None,
                    max_draws: int = MAX_DRAWS) -> list[Scores]:
    """Identify every probe against seeded galleries of each size.

    With *decide*, each probe gets the app's `Decision` (`Recognizer.identify`); else the
    raw `Match` (for calibration, which re-scores them).
    """
    known_vecs = np.stack([e for _, e in probes.known])
    stranger_vecs = np.stack(probes.strangers)
    rng = np.random.default_rng(seed)
    plan = [(s, draws(len(probes.gallery), len(probes.known_people), s, max_draws)) for s in sizes]
    total, done = sum(n for _, n in plan), 0
    out = []
    for size, n_draws in plan:
        res = Scores(min(size, len(probes.gallery)))
        for people in draw_galleries(probes, size, n_draws, rng):
            with gallery_recognizer(rec, [(p, probes.gallery[p]) for p in people], workdir) as sub:
                pid = {p.name: p.id for p in sub.people()}
                which = [i for i, (n, _) in enumerate(probes.known) if n in pid]
                kv = known_vecs[which]
                if decide:
                    decisions = sub.identify(kv)
                    res.known.extend(decisions)
                    best = [d.candidate_id for d in decisions]
                else:
                    matches = sub.index.match(kv)
                    res.known.extend(matches)
                    best = [m.person_id for m in matches]
                res.known_correct.extend(b == pid[probes.known[i][0]] for b, i in zip(best, which))
                res.strangers.extend(sub.identify(stranger_vecs) if decide
                                     else sub.index.match(stranger_vecs))
            res.galleries += 1
            done += 1
            if progress:
                progress(done, total)
        out.append(res)
    return out


# -- the report -------------------------------------------------------------------------

@dataclass
class SizeReport:
    """Open-set figures for galleries of one size."""

    size: int
    galleries: int
    known: int
    strangers: int
    rank1: float  # best candidate is the right person (threshold ignored)
    named_right: float
    wrong_name: float
    stranger_named: float
    threshold: float  # mean decision threshold applied
    dir_at_far: dict[float, float]  # rank-1 named at the threshold giving that stranger rate

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"size": self.size, "galleries": self.galleries, "known_probes": self.known,
                "stranger_probes": self.strangers, "rank1": round(self.rank1, 6),
                "named_right": round(self.named_right, 6), "wrong_name": round(self.wrong_name, 6),
                "stranger_false_accept": round(self.stranger_named, 6),
                "threshold": round(self.threshold, 6),
                "dir_at_far": {f"{far:g}": round(v, 6) for far, v in self.dir_at_far.items()}}


def summarize(scores: Scores) -> SizeReport:
    """Rates at the app's decisions, and DIR at FAR.

    DIR at FAR (as in BLUFR) sets, per size, the threshold on the decision score that
    names the given share of the strangers, and counts the known probes named right at
    or above it.
    """
    correct = np.array(scores.known_correct, bool)
    k_score = np.array([d.score for d in scores.known])
    s_score = np.array([d.score for d in scores.strangers])
    k_named = np.array([d.person_id is not None for d in scores.known])
    s_named = np.array([d.person_id is not None for d in scores.strangers])
    thr = float(np.mean([d.threshold for d in scores.strangers]))
    dir_ = {far: tar_at_far(np.where(correct, k_score, -np.inf), s_score, far)[0] for far in DIR_FARS}
    return SizeReport(scores.size, scores.galleries, correct.size, s_score.size,
                      float(correct.mean()), float((k_named & correct).mean()),
                      float((k_named & ~correct).mean()), float(s_named.mean()), thr, dir_)


# -- calibration -----------------------------------------------------------------------

def _s12(matches: Sequence[Match]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([m.similarity for m in matches]), np.array([m.runner_up for m in matches]))


def fit_tail(scores: np.ndarray) -> tuple[float, float]:
    """(score exceeded by `TAIL_FRACTION` of *scores*, mean excess above it)."""
    start = float(np.quantile(scores, 1 - TAIL_FRACTION))
    excess = scores[scores > start] - start
    return start, float(excess.mean()) if excess.size else 1e-3


@dataclass
class CalibrationResult:
    """The chosen calibration and what each runner-up weight would have given."""

    calibration: Calibration
    weights: dict[float, float]  # runner-up weight -> mean named right at the target
    table: list[dict[str, float]]  # per size, for the chosen weight


def calibrate(scores: Sequence[Scores], target: float, source: dict[str, Any]) -> CalibrationResult:
    """Choose the runner-up weight and fit strangers' score tails per gallery size.

    For each weight in `RUNNER_UP_WEIGHTS`, the tails are fitted per size and the known
    probes named right at *target* are counted; the weight naming the most (mean over the
    sizes with a runner-up, i.e. above 1 person) wins.
    """
    fitted: dict[float, tuple[Calibration, list[dict[str, float]], float]] = {}
    for w in RUNNER_UP_WEIGHTS:
        starts: list[float] = []
        scales: list[float] = []
        rows: list[dict[str, float]] = []
        for sc in scores:
            s1, s2 = _s12(sc.strangers)
            start, scale = fit_tail(s1 - w * np.maximum(s2, 0))
            starts.append(start)
            scales.append(scale)
        cal = Calibration(w, tuple(sc.size for sc in scores), tuple(starts), tuple(scales), source)
        for sc in scores:
            k1, k2 = _s12(sc.known)
            thr = cal.threshold(sc.size, target)
            named = (k1 - w * np.maximum(k2, 0)) >= thr
            correct = np.array(sc.known_correct, bool)
            s1, s2 = _s12(sc.strangers)
            rows.append({"size": sc.size, "galleries": sc.galleries, "threshold": thr,
                         "tail_start": cal.tail_start[len(rows)], "tail_scale": cal.tail_scale[len(rows)],
                         "named_right": float((named & correct).mean()),
                         "wrong_name": float((named & ~correct).mean()),
                         "stranger_false_accept": float(((s1 - w * np.maximum(s2, 0)) >= thr).mean())})
        gain = float(np.mean([r["named_right"] for r in rows if r["size"] > 1] or [0.0]))
        fitted[w] = (cal, rows, gain)
    best = max(fitted, key=lambda w: (round(fitted[w][2], 6), -w))
    cal, rows, _ = fitted[best]
    source = {**source, "runner_up_weights_tried": {f"{w:g}": round(g, 4)
                                                     for w, (_, _, g) in fitted.items()}}
    return CalibrationResult(replace(cal, source=source), {w: g for w, (_, _, g) in fitted.items()},
                             rows)


def calibration_source(probes: Probes, target: float, seed: int, command: str) -> dict[str, Any]:
    """Provenance recorded in a calibration file."""
    return {"command": command, "seed": seed, "target": target, "embedder": EMBEDDER.filename,
            "embedder_sha256": EMBEDDER.sha256, "embedding_version": EMBEDDING_VERSION,
            "gallery_people": len(probes.gallery),
            "gallery_faces": sum(len(v) for v in probes.gallery.values()),
            "known_probes": len(probes.known), "strangers": len(probes.strangers)}


def calibration_sizes(n_people: int) -> list[int]:
    """`CALIBRATION_SIZES` up to the gallery, plus the whole gallery."""
    return sorted({s for s in CALIBRATION_SIZES if s < n_people} | {n_people})


@dataclass
class MeanResult:
    """What `mean_embedding` computed, and from what."""

    mean: np.ndarray
    people: int
    photos: int
    skipped: list[str]


def mean_embedding(folder: Path, detector: FaceDetector, embedder: FaceEmbedder,
                   progress: Progress | None = None) -> MeanResult:
    """The person-balanced mean of the network's embeddings of a folder of people.

    *folder* holds one subfolder of photos per person; each photo contributes its
    subject's face (the one nearest the centre), each person their mean
    (`embedder.person_balanced_mean`). *embedder* must be built with ``centred=False``.

    Raises
    ------
    FacerecError
        If the folder holds no usable photo.
    """
    if embedder.mean is not None:
        raise ValueError("the mean is made from the network's own embeddings (centred=False)")
    found = person_folders(Path(folder))
    vectors: dict[str, list[np.ndarray]] = {}
    skipped = list(found.skipped)
    for k, (name, path) in enumerate(found.photos):
        try:
            vec = subject_face_embedding(detector, embedder, load_image(path))
        except ImageError as exc:
            skipped.append(str(exc))
        else:
            if vec is None:
                skipped.append(f"{display_name(path)}: no face found")
            else:
                vectors.setdefault(name, []).append(vec)
        if progress:
            progress(k + 1, len(found.photos))
    if not vectors:
        raise FacerecError(f"{display_name(folder)}: no face found in any photo (expected one "
                           "subfolder of photos per person)")
    return MeanResult(person_balanced_mean(vectors), len(vectors),
                      sum(len(v) for v in vectors.values()), skipped)
