"""Face verification metrics on labelled pairs: a CSV, or LFW's own ``pairs.txt``.

Two formats are read:

* **CSV** ``file_x,file_y,Decision`` (``Yes`` same person, ``No`` different); no folds.
* **LFW pairs** (``pairs.txt`` of View 2, or ``pairsDevTrain.txt``/``pairsDevTest.txt`` of
  View 1): a header ``FOLDS N`` (or just ``N``), then per fold N same-person lines
  ``name n1 n2`` followed by N different-people lines ``name1 n1 name2 n2``; the image of
  ``name n`` is ``name/name_%04d.jpg`` under the images folder.

With folds, every threshold is chosen on the other folds and applied to the held-out one
(LFW's protocol for View 2); without folds, thresholds are chosen and measured on the
same pairs, which is optimistic, and the report says so.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.pipeline.errors import FacerecError
from app.pipeline.storage.export import write_csv

log = logging.getLogger(__name__)

#: False accept rates at which the true accept rate is reported.
REPORT_FARS = (0.01, 0.001, 0.0001)


@dataclass(frozen=True)
class Pair:
    """Two images, whether they show the same person, and the pair's fold (None: no folds)."""

    file_x: str
    file_y: str
    same: bool
    fold: int | None = None


@dataclass
class TarAtFar:
    """True accept rate at a target false accept rate, and how its threshold was set."""

    far: float
    tar: float
    threshold: float
    measured_far: float  # on the pairs the TAR was measured on
    tar_std: float | None = None  # over folds
    resolution: float = 0.0  # smallest FAR the pairs that set the threshold can express
    method: str = ""

    def to_json(self) -> dict[str, object]:
        """JSON form."""
        return {"far": self.far, "tar": round(self.tar, 6),
                "tar_std": None if self.tar_std is None else round(self.tar_std, 6),
                "threshold": round(self.threshold, 6), "measured_far": round(self.measured_far, 6),
                "method": self.method}


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
    folds: int | None = None
    fold_accuracy: list[float] = field(default_factory=list)
    fold_thresholds: list[float] = field(default_factory=list)
    tar_at: list[TarAtFar] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    same_scores: list[float] = field(default_factory=list, repr=False)
    different_scores: list[float] = field(default_factory=list, repr=False)
    pair_scores: list[float | None] = field(default_factory=list, repr=False)  # per input pair

    @property
    def accuracy_mean(self) -> float:
        """Mean held-out accuracy over folds (NaN without folds)."""
        return float(np.mean(self.fold_accuracy)) if self.fold_accuracy else float("nan")

    @property
    def accuracy_std(self) -> float:
        """Standard deviation of the held-out accuracy over folds (NaN without folds)."""
        return float(np.std(self.fold_accuracy)) if self.fold_accuracy else float("nan")

    def to_json(self) -> dict[str, object]:
        """The public JSON form of ``facerec eval --json`` (fields are only ever added)."""
        out: dict[str, object] = {
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
            "folds": self.folds,
            "tar_at_far": [t.to_json() for t in self.tar_at],
        }
        if self.folds:
            out["accuracy_mean"] = round(self.accuracy_mean, 6)
            out["accuracy_std"] = round(self.accuracy_std, 6)
            out["fold_accuracy"] = [round(a, 6) for a in self.fold_accuracy]
            out["fold_thresholds"] = [round(t, 6) for t in self.fold_thresholds]
        return out


# -- reading pairs ------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\d+)(?:\s+(\d+))?\s*$")


def read_pairs(path: Path) -> list[Pair]:
    """Parse a pairs file (CSV or LFW ``pairs.txt``, told apart by the first line).

    Raises
    ------
    FacerecError
        With the file, the line and the reason if it is malformed.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except FileNotFoundError:
        raise FacerecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FacerecError(f"{path}: is a directory, not a pairs file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FacerecError(f"{path}: cannot read pairs file ({exc})") from None
    pairs = _read_lfw(path) if _HEADER.match(first) else _read_csv(path)
    if not pairs:
        raise FacerecError(f"{path}: no pairs")
    return pairs


def _read_csv(path: Path) -> list[Pair]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            missing = {"file_x", "file_y", "Decision"} - cols
            if missing:
                raise FacerecError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                                   "(expected file_x,file_y,Decision, or LFW's pairs.txt format)")
            pairs = []
            for lineno, row in enumerate(reader, start=2):
                decision = (row["Decision"] or "").strip().lower()
                if decision not in ("yes", "no"):
                    raise FacerecError(f"{path}:{lineno}: Decision must be Yes or No, "
                                       f"not {row['Decision']!r}")
                pairs.append(Pair(row["file_x"].strip(), row["file_y"].strip(), decision == "yes"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FacerecError(f"{path}: cannot read pairs file ({exc})") from None
    return pairs


def lfw_image(name: str, number: int) -> str:
    """LFW's file for the *number*-th photo of *name*: ``name/name_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def _read_lfw(path: Path) -> list[Pair]:
    """LFW's format: header ``FOLDS N`` or ``N``, then per fold N same and N different pairs."""
    try:
        lines = [(i, ln.split()) for i, ln in
                 enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise FacerecError(f"{path}: cannot read pairs file ({exc})") from None
    head = [int(v) for v in lines[0][1]]
    folds, per = (head[0], head[1]) if len(head) == 2 else (1, head[0])
    body = lines[1:]
    if folds < 1 or per < 1 or len(body) != folds * 2 * per:
        raise FacerecError(f"{path}: the header says {folds} fold(s) of {per} same and {per} "
                           f"different pairs ({folds * 2 * per} lines), but {len(body)} follow")
    pairs = []
    for k, (lineno, f) in enumerate(body):
        fold, same = k // (2 * per), k % (2 * per) < per
        try:
            if same and len(f) == 3:
                pair = Pair(lfw_image(f[0], int(f[1])), lfw_image(f[0], int(f[2])), True, fold)
            elif not same and len(f) == 4:
                pair = Pair(lfw_image(f[0], int(f[1])), lfw_image(f[2], int(f[3])), False, fold)
            else:
                raise ValueError
        except ValueError:
            want = "name n1 n2" if same else "name1 n1 name2 n2"
            raise FacerecError(f"{path}:{lineno}: expected a {'same' if same else 'different'}"
                               f"-person pair '{want}'") from None
        pairs.append(pair)
    return pairs if folds > 1 else [Pair(p.file_x, p.file_y, p.same) for p in pairs]


# -- metrics ------------------------------------------------------------------------------

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
    # Pairs on each side of every cut, by binary search (LFW has 6000 scores).
    same_above = same.size - np.searchsorted(np.sort(same), cuts, side="left")
    diff_below = np.searchsorted(np.sort(different), cuts, side="left")
    acc = (same_above + diff_below) / (same.size + different.size)
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
    """(TAR, threshold) at the lowest threshold whose false accept rate is <= *far*.

    The threshold lies just above the (k+1)-th highest different score, k = floor(far * n):
    with fewer than 1/far different pairs it is above every one of them.
    """
    diff_sorted = np.sort(different)[::-1]
    allowed = int(np.floor(far * different.size))  # false accepts we may make
    # Threshold just above the (allowed+1)-th highest different score.
    thr = float(np.nextafter(diff_sorted[allowed], np.inf)) if allowed < diff_sorted.size else -1.0
    return float((same >= thr).mean()), thr


def _tar_rows_pooled(s: np.ndarray, d: np.ndarray) -> list[TarAtFar]:
    rows = []
    for far in REPORT_FARS:
        tar, thr = tar_at_far(s, d, far)
        allowed = int(np.floor(far * d.size))
        method = (f"threshold set on the same pairs: lowest with at most {allowed} of "
                  f"{d.size} different pairs at or above it")
        if allowed == 0:
            method += " (above every one; this FAR needs more different pairs)"
        rows.append(TarAtFar(far, tar, thr, float((d >= thr).mean()), None, 1 / d.size, method))
    return rows


def _tar_rows_folds(s: np.ndarray, d: np.ndarray, s_fold: np.ndarray, d_fold: np.ndarray,
                    folds: list[int]) -> list[TarAtFar]:
    rows = []
    for far in REPORT_FARS:
        tars, fars, thrs, train_n = [], [], [], []
        for k in folds:
            dt = d[d_fold != k]
            _, thr = tar_at_far(s[s_fold != k], dt, far)
            tars.append(float((s[s_fold == k] >= thr).mean()))
            fars.append(float((d[d_fold == k] >= thr).mean()))
            thrs.append(thr)
            train_n.append(dt.size)
        n = int(np.min(train_n))
        method = (f"threshold set on the other {len(folds) - 1} folds' {n} different pairs "
                  f"(lowest with FAR <= {far:g} there), TAR and FAR measured on the held-out fold")
        if far * n < 1:
            method += "; FAR below 1/n there: the threshold is above every one of them"
        rows.append(TarAtFar(far, float(np.mean(tars)), float(np.mean(thrs)), float(np.mean(fars)),
                             float(np.std(tars)), 1 / n, method))
    return rows


def verify_pairs(pairs: list[Pair], images_dir: Path,
                 embed_image: Callable[[Path], np.ndarray | None],
                 progress: Callable[[int, int], None] | None = None) -> VerificationReport:
    """Score every pair by the cosine similarity of the largest face in each image.

    Pairs with an image that cannot be read or has no face are left out (and listed).

    Parameters
    ----------
    embed_image : callable
        Returns the embedding of the largest face of an image, None if it has no face;
        raises `FacerecError` if it cannot be read.
    """
    files = sorted({p.file_x for p in pairs} | {p.file_y for p in pairs})
    if not (images_dir / files[0]).exists() and not any((images_dir / f).exists() for f in files[1:50]):
        raise FacerecError(f"{images_dir}: none of the pairs' images are there (e.g. {files[0]}); "
                           "pass the image folder with --images")
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
    pair_scores: list[float | None] = []
    for p in pairs:
        a, b = emb.get(p.file_x), emb.get(p.file_y)
        pair_scores.append(None if a is None or b is None else float(np.dot(a, b)))
    scored = [(p, v) for p, v in zip(pairs, pair_scores) if v is not None]
    s = np.array([v for p, v in scored if p.same])
    d = np.array([v for p, v in scored if not p.same])
    if s.size == 0 or d.size == 0:
        raise FacerecError("too few scorable pairs: need at least one same and one different pair")
    acc, thr = best_threshold(s, d)
    tar, thr_far = tar_at_far(s, d, 0.01)
    report = VerificationReport(
        pairs=len(pairs), scored_pairs=s.size + d.size, same_pairs=s.size, different_pairs=d.size,
        auc=roc_auc(s, d), best_accuracy=acc, best_threshold=thr, tar_at_far_1pct=tar,
        threshold_far_1pct=thr_far, no_face=no_face, unreadable=unreadable,
        same_scores=s.tolist(), different_scores=d.tolist(), pair_scores=pair_scores,
    )
    folds = sorted({p.fold for p in pairs if p.fold is not None})
    if len(folds) > 1:
        s_fold = np.array([p.fold for p, _ in scored if p.same])
        d_fold = np.array([p.fold for p, _ in scored if not p.same])
        report.folds = len(folds)
        for k in folds:
            tr_s, tr_d = s[s_fold != k], d[d_fold != k]
            te_s, te_d = s[s_fold == k], d[d_fold == k]
            _, fold_thr = best_threshold(tr_s, tr_d)
            report.fold_thresholds.append(fold_thr)
            report.fold_accuracy.append(
                float(((te_s >= fold_thr).sum() + (te_d < fold_thr).sum()) / (te_s.size + te_d.size)))
        report.tar_at = _tar_rows_folds(s, d, s_fold, d_fold, folds)
    else:
        report.tar_at = _tar_rows_pooled(s, d)
    return report


def write_scores(pairs: list[Pair], report: VerificationReport, path: Path) -> None:
    """Every pair's score as CSV: ``fold,file_x,file_y,same,score`` (empty: not scored)."""
    write_csv(path, ["fold", "file_x", "file_y", "same", "score"], (
        ["" if p.fold is None else p.fold + 1, p.file_x, p.file_y, int(p.same),
         "" if v is None else f"{v:.6f}"] for p, v in zip(pairs, report.pair_scores)))


def plot_report(report: VerificationReport, path: Path) -> None:
    """Write the ROC curve (log false-accept axis) and the score histograms as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, d = np.array(report.same_scores), np.array(report.different_scores)
    thr = np.unique(np.concatenate([s, d]))[::-1]
    tpr = np.array([(s >= t).mean() for t in thr])
    fpr = np.array([(d >= t).mean() for t in thr])
    floor = 1 / d.size  # the lowest FAR these pairs can show
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    keep = fpr > 0
    ax1.plot(fpr[keep], tpr[keep], lw=2)
    ax1.set_xscale("log")
    for t in report.tar_at:
        if t.far >= floor:
            ax1.axvline(t.far, c="grey", ls=":", lw=1)
    how = f"{report.folds}-fold accuracy {report.accuracy_mean:.4f}" if report.folds else \
        f"best accuracy {report.best_accuracy:.4f}"
    ax1.set(xlabel="false accept rate (log)", ylabel="true accept rate",
            title=f"ROC (AUC = {report.auc:.4f}; {how})", xlim=(floor, 1), ylim=(0, 1.01))
    ax1.grid(True, which="both", alpha=0.3)
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
