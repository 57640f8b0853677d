"""Face verification metrics on a labelled pairs file (``file_x,file_y,Decision``)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.pipeline.errors import FacerecError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person."""

    file_x: str
    file_y: str
    same: bool


@dataclass
class VerificationReport:
    """What `verify_pairs` measured."""

    pairs: int
    scored_pairs: int
    same_pairs: int
    different_pairs: int
    auc: float
    best_accuracy: float
    best_threshold: float
    tar_at_far_1pct: float
    threshold_far_1pct: float
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    same_scores: list[float] = field(default_factory=list, repr=False)
    different_scores: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, object]:
        """The public JSON form of ``facerec eval --json``."""
        return {
            "pairs": self.pairs,
            "scored_pairs": self.scored_pairs,
            "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs,
            "auc": round(self.auc, 6),
            "accuracy": round(self.best_accuracy, 6),
            "threshold": round(self.best_threshold, 6),
            "tar_at_far_1pct": round(self.tar_at_far_1pct, 6),
            "threshold_at_far_1pct": round(self.threshold_far_1pct, 6),
            "no_face": self.no_face,
            "unreadable": self.unreadable,
        }


def read_pairs(path: Path) -> list[Pair]:
    """Parse a pairs CSV; raise `FacerecError` with the reason if it is malformed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            missing = {"file_x", "file_y", "Decision"} - cols
            if missing:
                raise FacerecError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                   "(expected file_x,file_y,Decision)")
            pairs = []
            for lineno, row in enumerate(reader, start=2):
                decision = (row["Decision"] or "").strip().lower()
                if decision not in ("yes", "no"):
                    raise FacerecError(f"{path}:{lineno}: Decision must be Yes or No, "
                                       f"not {row['Decision']!r}")
                pairs.append(Pair(row["file_x"].strip(), row["file_y"].strip(), decision == "yes"))
    except FileNotFoundError:
        raise FacerecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FacerecError(f"{path}: cannot read pairs file ({exc})") from None
    if not pairs:
        raise FacerecError(f"{path}: no pairs")
    return pairs


def roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """Area under the ROC curve: P(same score > different score), ties count half."""
    if same.size == 0 or different.size == 0:
        return float("nan")
    scores = np.concatenate([same, different])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    i = 0
    while i < scores.size:
        j = i
        while j + 1 < scores.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[: same.size].sum() - same.size * (same.size + 1) / 2.0
    return float(u / (same.size * different.size))


def best_threshold(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) maximising accuracy of ``score >= threshold``.

    Among equally accurate thresholds the midpoint of the widest gap is returned, which
    is the most robust choice when the classes separate.
    """
    scores = np.unique(np.concatenate([same, different]))
    cuts = np.concatenate([[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]])
    n = same.size + different.size
    acc = np.array([((same >= c).sum() + (different < c).sum()) / n for c in cuts])
    best = acc.max()
    idx = np.flatnonzero(acc == best)
    # The best cuts form runs; choose the middle of the longest run in score units.
    gaps = [(cuts[b] - cuts[a], (cuts[a] + cuts[b]) / 2)
            for a, b in _runs(idx)]
    return float(best), float(max(gaps)[1])


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], int(idx[0])
    for a, b in zip(idx[:-1], idx[1:]):
        if b != a + 1:
            runs.append((start, int(a)))
            start = int(b)
    runs.append((start, int(idx[-1])))
    return runs


def tar_at_far(same: np.ndarray, different: np.ndarray, far: float = 0.01) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose false accept rate is <= *far*."""
    diff_sorted = np.sort(different)[::-1]
    allowed = int(np.floor(far * different.size))  # false accepts we may make
    # Threshold just above the (allowed+1)-th highest different score.
    thr = float(np.nextafter(diff_sorted[allowed], np.inf)) if allowed < diff_sorted.size else -1.0
    return float((same >= thr).mean()), thr


def verify_pairs(pairs: list[Pair], images_dir: Path,
                 embed_image: Callable[[Path], np.ndarray | None],
                 progress: Callable[[int, int], None] | None = None) -> VerificationReport:
    """Score every pair by the cosine similarity of the largest face in each image.

    Parameters
    ----------
    embed_image : callable
        Returns the embedding of the largest face of an image, None if it has no face;
        raises `FacerecError` if it cannot be read.
    """
    files = sorted({p.file_x for p in pairs} | {p.file_y for p in pairs})
    emb: dict[str, np.ndarray | None] = {}
    no_face, unreadable = [], []
    for k, name in enumerate(files):
        try:
            emb[name] = embed_image(images_dir / name)
        except FacerecError as exc:
            log.warning("%s", exc)
            emb[name] = None
            unreadable.append(name)
        else:
            if emb[name] is None:
                no_face.append(name)
        if progress:
            progress(k + 1, len(files))
    same: list[float] = []
    diff: list[float] = []
    for p in pairs:
        a, b = emb.get(p.file_x), emb.get(p.file_y)
        if a is None or b is None:
            continue
        (same if p.same else diff).append(float(np.dot(a, b)))
    s, d = np.array(same), np.array(diff)
    if s.size == 0 or d.size == 0:
        raise FacerecError("too few scorable pairs: need at least one same and one different pair")
    acc, thr = best_threshold(s, d)
    tar, thr_far = tar_at_far(s, d, 0.01)
    return VerificationReport(
        pairs=len(pairs), scored_pairs=s.size + d.size, same_pairs=s.size, different_pairs=d.size,
        auc=roc_auc(s, d), best_accuracy=acc, best_threshold=thr, tar_at_far_1pct=tar,
        threshold_far_1pct=thr_far, no_face=no_face, unreadable=unreadable,
        same_scores=same, different_scores=diff,
    )


def plot_report(report: VerificationReport, path: Path) -> None:
    """Write the ROC curve and the same/different score histograms as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, d = np.array(report.same_scores), np.array(report.different_scores)
    thr = np.unique(np.concatenate([s, d, [-1.0, 1.01]]))[::-1]
    tpr = [(s >= t).mean() for t in thr]
    fpr = [(d >= t).mean() for t in thr]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.plot(fpr, tpr, lw=2)
    ax1.plot([0, 1], [0, 1], ls=":", c="grey")
    ax1.set(xlabel="false accept rate", ylabel="true accept rate",
            title=f"ROC (AUC = {report.auc:.4f})", xlim=(-0.01, 1), ylim=(0, 1.01))
    bins = np.linspace(min(s.min(), d.min()), max(s.max(), d.max()), 40)
    ax2.hist(d, bins=bins, alpha=0.6, label=f"different ({d.size})", color="tab:red")
    ax2.hist(s, bins=bins, alpha=0.6, label=f"same ({s.size})", color="tab:green")
    ax2.axvline(report.best_threshold, c="k", ls="--",
                label=f"threshold {report.best_threshold:.3f}")
    ax2.set(xlabel="cosine similarity", ylabel="pairs", title="Score distributions")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
