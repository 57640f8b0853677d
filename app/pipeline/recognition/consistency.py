"""Same-person checks for faces about to join a person, and for faces already stored.

One wrong photo in a person makes strangers match them, so every face is checked
before it is saved, by the desktop app and the command line alike (one policy):

* **unlike**: the face must look like the person's other faces: their stored faces
  plus the other new faces saved with it. It must reach `SAME_PERSON_MIN` with at
  least half of them (its ⌈k/2⌉-th best similarity among k), so one odd photo in
  the person cannot vouch for another, and a batch of several people's photos is
  caught even when each photo has a look-alike in the batch.
* **other person**: the face must not match another enrolled person better than its
  own, by the per-person similarity recognition starts from (`FaceIndex.person_scores`); a
  face for a new person must not match anybody enrolled at `SAME_PERSON_MIN`.

A flag is a warning with its similarity and reason, not a verdict: the desktop app
lets the user drop the face or keep it on purpose, the command line refuses it unless
``--force``. `audit` runs the same checks on a person's stored faces, so a wrong face
saved earlier stands out in the people manager.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.pipeline.recognition.index import FaceIndex
from app.pipeline.recognition.index import person_score as index_person_score
from app.pipeline.types import EMBEDDING_DIM

#: Two faces at least this similar are taken for the same person: the middle of the gap
#: between the same-person and the different-person pairs of the shared photos whose
#: identity is known. The pairs, the gap and its cost on LFW: README.md, "Same-person
#: checks"; tests/pipeline/test_consistency.py re-measures the gap.
SAME_PERSON_MIN = 0.39

UNLIKE = "unlike"
OTHER_PERSON = "other person"
#: A stored face made by an older embedding version (`app.pipeline.storage.outdated`): it is not
#: checked, and not used for recognition.
OUTDATED = "older version"


@dataclass(frozen=True)
class Flag:
    """Why a face may not belong to the person it is given to.

    Attributes
    ----------
    kind : str
        `UNLIKE` (it does not look like the person's other faces), `OTHER_PERSON`
        (it looks like someone else who is enrolled) or, for a stored face, `OUTDATED`
        (an older version of facerec made it).
    similarity : float
        For `UNLIKE`, its similarity to the person's other faces (the ⌈k/2⌉-th best);
        for `OTHER_PERSON`, the other person's score; NaN for `OUTDATED`.
    reason : str
        One line for the user, with the similarity.
    other : str or None
        The other person's name (`OTHER_PERSON` only).
    """

    kind: str
    similarity: float
    reason: str
    other: str | None = None


def agreement(face: np.ndarray, others: np.ndarray) -> float:
    """The face's ⌈k/2⌉-th best similarity to *k* other faces: like at least half of them."""
    sims = np.sort(np.asarray(others, np.float32) @ np.asarray(face, np.float32))[::-1]
    return float(sims[math.ceil(sims.size / 2) - 1])


def person_score(face: np.ndarray, others: np.ndarray) -> float:
    """The per-person score recognition would give *face* against *others*."""
    others = np.asarray(others, np.float32)
    return index_person_score(others @ np.asarray(face, np.float32),
                              float(np.linalg.norm(others.sum(axis=0))))


def check(index: FaceIndex, name: str, person_id: int | None, faces: np.ndarray,
          exclude_faces: Sequence[int] = ()) -> list[Flag | None]:
    """Check new faces for a person; one `Flag` (or None) per face, in order.

    Parameters
    ----------
    index : FaceIndex
        The enrolled gallery, up to date.
    name : str
        The person's name (for the reasons).
    person_id : int or None
        The person's id if enrolled, None for a new person.
    faces : ndarray
        (n, EMBEDDING_DIM) unit embeddings of the faces to be saved together.
    exclude_faces : sequence of int
        Stored face ids to leave out (the faces being checked, when they are stored:
        a face moved between people, or one audited in place).
    """
    new = np.asarray(faces, np.float32).reshape(-1, EMBEDDING_DIM)
    excluded = np.asarray(list(exclude_faces), np.int64)
    ids, stored = index.faces_of(person_id) if person_id is not None else (
        np.empty(0, np.int64), np.empty((0, new.shape[1]), np.float32))
    stored = stored[~np.isin(ids, excluded)]
    out: list[Flag | None] = []
    for i, face in enumerate(new):
        others = np.concatenate([stored, np.delete(new, i, axis=0)])
        own = person_score(face, others) if len(others) else None
        flag = _other_person(index, name, person_id, face, own, excluded)
        if flag is None and len(others):
            sim = agreement(face, others)
            if sim < SAME_PERSON_MIN:
                what = ("the other photo" if len(others) == 1 and not len(stored) else
                        f"{name}'s other face" if len(others) == 1 else
                        f"{name}'s other {len(others)} faces")
                flag = Flag(UNLIKE, sim, f"does not look like {what} (similarity {sim:.2f}; "
                                         f"{SAME_PERSON_MIN:.2f} expected)")
        out.append(flag)
    return out


def _other_person(index: FaceIndex, name: str, person_id: int | None, face: np.ndarray,
                  own: float | None, excluded: np.ndarray) -> Flag | None:
    for score, pid in index.person_scores(face, excluded if excluded.size else None):
        if pid == person_id:
            continue
        if score < SAME_PERSON_MIN or (own is not None and score <= own):
            return None
        other = index.name_of(pid) or f"person {pid}"
        if own is None:
            reason = f"looks like {other}, who is already enrolled (similarity {score:.2f})"
        else:
            reason = f"looks more like {other} (similarity {score:.2f}) than like {name} ({own:.2f})"
        return Flag(OTHER_PERSON, score, reason, other)
    return None


def outdated_flag() -> Flag:
    """The flag of a stored face made by an older embedding version."""
    return Flag(OUTDATED, math.nan, "was enrolled by an older version of facerec and is not used "
                "for recognition: enroll this person again from a photo, then remove it")


def audit(index: FaceIndex, name: str, person_id: int) -> dict[int, Flag]:
    """The flags of a person's stored faces, each checked against the rest (face id -> Flag)."""
    ids, vecs = index.faces_of(person_id)
    out: dict[int, Flag] = {}
    for face_id, vec in zip(ids.tolist(), vecs):
        flag = check(index, name, person_id, vec[None], exclude_faces=[face_id])[0]
        if flag is not None:
            out[int(face_id)] = flag
    return out

