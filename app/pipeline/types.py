"""Plain value types passed between the pipeline and its front ends.

They are frozen and own their arrays, so a result can cross from the worker thread to
the GUI thread without copying or locking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: BlazeFace keypoint order (the subject's right/left, so "right eye" is on image left).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes
    ----------
    box : tuple of int
        ``(x, y, w, h)`` in pixels of the frame.
    keypoints : ndarray
        (6, 2) float32 pixel coordinates, in `KEYPOINT_NAMES` order.
    score : float
        Detector confidence in [0, 1].
    raw_box : tuple of float
        The detector's box before clipping to the frame (it may extend past the edge
        for a face cut off by the border); alignment uses it so such a face is not
        stretched.
    """

    box: tuple[int, int, int, int]
    keypoints: np.ndarray
    score: float
    raw_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class FaceResult:
    """A detected face and who it is.

    ``name`` is None for Unknown; ``similarity`` is the best person's score even then,
    so a user can see how close it came, and ``candidate`` names that person.
    ``decision_score`` is what the decision rule compared with its threshold
    (`app.pipeline.decision`), and ``false_accept`` the estimated share of strangers who
    would score as high against this gallery.
    """

    box: tuple[int, int, int, int]
    keypoints: np.ndarray
    score: float
    name: str | None
    similarity: float
    person_id: int | None = None
    track: int | None = None
    decision_score: float | None = None
    false_accept: float | None = None
    candidate: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The public JSON form used by ``identify`` and ``watch``."""
        out: dict[str, Any] = {
            "box": [int(v) for v in self.box],
            "name": self.name,
            "similarity": round(float(self.similarity), 4),
            "score": round(float(self.score), 4),
        }
        if self.decision_score is not None:
            out["decision_score"] = round(float(self.decision_score), 4)
        if self.false_accept is not None:
            out["false_accept"] = float(f"{self.false_accept:.3g}")
        if self.track is not None:
            out["track"] = self.track
        return out


@dataclass(frozen=True)
class FrameResult:
    """Everything `Recognizer.process` found in one frame.

    Attributes
    ----------
    faces : tuple of FaceResult
        Largest face first.
    size : tuple of int
        ``(width, height)`` of the frame.
    timings : dict
        Milliseconds per stage: ``detect``, ``align``, ``embed``, ``search``, ``total``.
    frame_index : int
        Position of the frame in its stream.
    embedded : int
        Faces embedded for this frame (a tracker skips faces it already knows).
    """

    faces: tuple[FaceResult, ...]
    size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    frame_index: int = 0
    embedded: int = 0
