"""Name a face, or say Unknown: the one decision rule of photos, video, the CLI, the GUI and eval.

Why a fixed similarity threshold is not enough
----------------------------------------------
A stranger is compared with every enrolled person and only the best match counts, so
with a fixed threshold the share of strangers who get *somebody's* name grows with the
gallery: on the LFW open-set split, the former crop's default 0.52 named 0.7 % of
strangers with one person enrolled and 71 % with 600.

The rule
--------
For a face, let ``s1`` be the best person's score and ``s2`` the runner-up person's
(`index.Match`). The *decision score* is::

    D = s1 - w * max(s2, 0)

A stranger who resembles the best person tends to resemble the next ones too (a high
``s2``), while an enrolled person's own score stands out from the rest. Measured on the
LFW calibration split, ``D`` separates strangers from enrolled people better than ``s1``
at every gallery size from 2 to 680 people, and the scores strangers reach grow more
slowly with the gallery than ``s1`` does. ``w`` is chosen by ``facerec calibrate``.

A face is named when ``D`` reaches the threshold for the number of people enrolled and
the user's false-accept target: the score that about that share of strangers reaches.
It comes from a calibration file (`Calibration`, ``models/calibration.json``) made by
``facerec calibrate`` from strangers' scores against galleries of many sizes: for each
size, the score exceeded by 5 % of strangers and the mean excess above it, from which
an exponential tail gives the score exceeded by any smaller share. Between calibrated
sizes it is interpolated in log(size); beyond the largest it goes on rising as it rose
over the last tenfold of calibrated sizes (it never falls).

An expert may also require a minimum raw similarity (``min_similarity``); it can only
make the rule stricter.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.config import FALSE_ACCEPT_RANGE
from app.pipeline.errors import ModelError
from app.pipeline.models import models_dir
from app.pipeline.recognition.index import Match

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 1
#: Share of strangers above which the tail model starts (the calibrated ``tail_start``).
TAIL_FRACTION = 0.05
#: Beyond the largest calibrated gallery the tail is extrapolated from the calibrated
#: sizes within this factor of the largest (see `Calibration._tail`).
EXTRAPOLATE_OVER = 10.0
MIN_TARGET, MAX_TARGET = FALSE_ACCEPT_RANGE
assert MAX_TARGET <= TAIL_FRACTION  # a target is always within the fitted tail


@dataclass(frozen=True)
class Calibration:
    """How strangers' decision scores are distributed, per gallery size.

    Attributes
    ----------
    runner_up_weight : float
        ``w`` in ``D = s1 - w * max(s2, 0)``.
    people : tuple of int
        Calibrated gallery sizes, increasing.
    tail_start : tuple of float
        Per size: the decision score exceeded by `TAIL_FRACTION` of strangers.
    tail_scale : tuple of float
        Per size: the mean excess of those strangers' scores over ``tail_start``.
    source : dict
        Provenance: the command, the split, the counts, the embedder's SHA-256.
    """

    runner_up_weight: float
    people: tuple[int, ...]
    tail_start: tuple[float, ...]
    tail_scale: tuple[float, ...]
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.people)
        if not n or len(self.tail_start) != n or len(self.tail_scale) != n:
            raise ValueError("people, tail_start and tail_scale must be non-empty and of one length")
        if list(self.people) != sorted(set(self.people)) or self.people[0] < 1:
            raise ValueError("people must be increasing and at least 1")
        if not all(math.isfinite(v) for v in (*self.tail_start, *self.tail_scale, self.runner_up_weight)):
            raise ValueError("values must be finite")
        if min(self.tail_scale) <= 0:
            raise ValueError("tail_scale must be positive")
        if not 0 <= self.runner_up_weight <= 1:
            raise ValueError("runner_up_weight must be in [0, 1]")

    @classmethod
    def fixed(cls, similarity: float) -> Calibration:
        """The rule facerec had before: a fixed similarity threshold.

        Named when the similarity reaches *similarity*, whatever the number of people and
        the target (for comparisons: ``eval-openset --fixed-threshold``).
        """
        return cls(0.0, (1,), (float(similarity),), (1e-9,), {"fixed_threshold": float(similarity)})

    def _tail(self, n_people: int) -> tuple[float, float]:
        """(tail_start, tail_scale) for a gallery of *n_people*.

        Log-linear between calibrated sizes. Beyond the largest, each goes on growing as
        it grew over the last tenfold of calibrated sizes (least squares in log size,
        from the largest size's value), but never falls: strangers' best scores keep
        rising with the gallery, slowly (`EXTRAPOLATE_OVER`).
        """
        grid = np.log(np.asarray(self.people, dtype=np.float64))
        x = math.log(max(n_people, self.people[0]))
        if x <= grid[-1]:
            return (float(np.interp(x, grid, self.tail_start)), float(np.interp(x, grid, self.tail_scale)))
        last = grid >= grid[-1] - math.log(EXTRAPOLATE_OVER)
        out = []
        for values in (self.tail_start, self.tail_scale):
            v = np.asarray(values, dtype=np.float64)
            slope = float(np.polyfit(grid[last], v[last], 1)[0]) if last.sum() >= 2 else 0.0
            out.append(float(v[-1] + max(slope, 0.0) * (x - grid[-1])))
        return out[0], out[1]

    def threshold(self, n_people: int, target: float) -> float:
        """Decision score that about *target* of strangers reach against *n_people* people."""
        start, scale = self._tail(n_people)
        return start + scale * math.log(TAIL_FRACTION / clamp_target(target))

    def false_accept(self, score: float, n_people: int) -> float:
        """Estimated share of strangers whose decision score reaches *score* (at most 1).

        Below ``tail_start`` the exponential tail is extended beyond what it was fitted
        on, which overstates the share: fine for a number that only says "many".
        """
        start, scale = self._tail(n_people)
        exponent = -(score - start) / scale
        return 1.0 if exponent > 50 else float(min(1.0, TAIL_FRACTION * math.exp(exponent)))

    def decision_score(self, similarity: float, runner_up: float) -> float:
        """``D = s1 - w * max(s2, 0)``."""
        return similarity - self.runner_up_weight * max(runner_up, 0.0)

    # -- file -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        d = asdict(self)
        d["tail_start"] = [round(v, 6) for v in self.tail_start]
        d["tail_scale"] = [round(v, 6) for v in self.tail_scale]
        return {"format": CALIBRATION_FORMAT, **{k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in d.items()}}

    def save(self, path: Path) -> None:
        """Write the calibration file."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        """Parse and check a calibration; `ValueError` says what is wrong."""
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"not a format-{CALIBRATION_FORMAT} calibration")
        try:
            return cls(float(data["runner_up_weight"]), tuple(int(v) for v in data["people"]),
                       tuple(float(v) for v in data["tail_start"]),
                       tuple(float(v) for v in data["tail_scale"]), dict(data.get("source") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or malformed field {exc}") from None

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read a calibration file.

        Raises
        ------
        ModelError
            If it is missing or malformed (it ships with the models).
        """
        fix = "reinstall facerec, or make it with 'facerec calibrate' (see README.md)"
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ModelError(f"calibration file missing: {path}; {fix}") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"calibration file {path} is unusable ({exc}); {fix}") from None


_loaded: dict[Path, Calibration] = {}


def load_calibration(directory: Path | None = None) -> Calibration:
    """The calibration shipped beside the models (read once per process)."""
    path = (directory or models_dir()) / CALIBRATION_FILE
    if path not in _loaded:
        _loaded[path] = Calibration.load(path)
    return _loaded[path]


def clamp_target(target: float) -> float:
    """A false-accept target within the range the calibration supports."""
    return min(max(float(target), MIN_TARGET), MAX_TARGET)


def describe_target(target: float) -> str:
    """The target as a person reads it: "about 1 stranger in 200"."""
    odds = 1 / clamp_target(target)
    return f"about 1 stranger in {odds:,.0f}"


@dataclass(frozen=True)
class Decision:
    """Who one face is, and the evidence.

    Attributes
    ----------
    person_id : int or None
        The person named; None means Unknown.
    candidate_id : int or None
        The best-matching person, named or not (None: nobody is enrolled).
    similarity : float
        The candidate's raw score (cosine similarity, aggregated per person).
    score : float
        The decision score ``D``.
    threshold : float
        The decision score needed to be named with this many people enrolled.
    false_accept : float
        Estimated share of strangers who would score ``D`` or more here.
    """

    person_id: int | None
    candidate_id: int | None
    similarity: float
    score: float
    threshold: float
    false_accept: float


class DecisionRule:
    """The calibrated rule at a user's strictness (see the module doc).

    Parameters
    ----------
    calibration : Calibration
        Strangers' score distributions for this embedder.
    target : float
        Share of strangers that may be named (e.g. 0.005: about 1 in 200).
    min_similarity : float
        Expert option: a raw similarity the best person must also reach (0: none).
    """

    def __init__(self, calibration: Calibration, target: float, min_similarity: float = 0.0) -> None:
        self.calibration = calibration
        self.target = clamp_target(target)
        self.min_similarity = float(min_similarity)

    def threshold(self, n_people: int) -> float:
        """Decision score needed to be named with *n_people* enrolled."""
        return self.calibration.threshold(n_people, self.target)

    def decide(self, match: Match, n_people: int) -> Decision:
        """Name the face of *match*, or not, against a gallery of *n_people* people."""
        if match.person_id is None:
            return Decision(None, None, match.similarity, -1.0, math.inf, 1.0)
        cal = self.calibration
        score = cal.decision_score(match.similarity, match.runner_up)
        thr = self.threshold(n_people)
        named = score >= thr and match.similarity >= self.min_similarity
        return Decision(match.person_id if named else None, match.person_id, match.similarity,
                        score, thr, cal.false_accept(score, n_people))

    def decide_all(self, matches: list[Match], n_people: int) -> list[Decision]:
        """`decide` for each match."""
        return [self.decide(m, n_people) for m in matches]
