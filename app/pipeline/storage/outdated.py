"""Faces enrolled by an older version of the pipeline: kept, reported, never matched.

Every stored face records the embedding version that made it (`NewFace.embedder`,
`align.EMBEDDING_VERSION`: the crop, the preprocessing and the mean subtracted). When
that changes, the faces enrolled before mean something else: the old crop's and the new
pipeline's embeddings of the same photo have cosine 0.82 only. Compared with today's
embeddings anyway (gallery old, probe new, LFW View 2), the same person scores much
lower (median 0.59 instead of 0.70) while the most similar strangers score higher
(0.431 instead of 0.416 at the 99.9th percentile): fewer right names and more wrong
ones, against a calibration that was made for neither. So faces of another version take
no part in recognition or in the same-person checks; they stay stored (with their
thumbnail and source) until the user removes them, and every place that lists people
says how many there are and that those people should be enrolled again from photos.
The measurement is in README.md, "Faces enrolled by an older version".

The store is the source of truth for which faces are current: `current_only` filters a
gallery snapshot or a change set with `Store.faces_not_made_by`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from app.pipeline.recognition.align import EMBEDDING_VERSION

if TYPE_CHECKING:
    from app.pipeline.storage.store import Store
    from app.pipeline.types import Gallery, GalleryDelta


@dataclass(frozen=True)
class Outdated:
    """The faces made by another embedding version, and whose they are.

    Attributes
    ----------
    faces : int
        How many stored faces another version made.
    by_person : dict of int to int
        Person id -> how many of their faces.
    unrecognised : int
        People with no face of the current version: they cannot be named at all.
    """

    faces: int = 0
    by_person: dict[int, int] | None = None
    unrecognised: int = 0

    @property
    def people(self) -> int:
        """People with at least one such face."""
        return len(self.by_person or {})

    def of(self, person_id: int) -> int:
        """How many of a person's faces another version made."""
        return (self.by_person or {}).get(person_id, 0)

    def note(self) -> str | None:
        """One line for the user, or None if every face is current."""
        if not self.faces:
            return None
        faces = f"{self.faces} face{'s' if self.faces != 1 else ''}"
        people = f"{self.people} {'person' if self.people == 1 else 'people'}"
        lost = ""
        if self.unrecognised:
            lost = (f"; {self.unrecognised} of them cannot be recognised at all"
                    if self.people > 1 else "; they cannot be recognised at all")
        return (f"{faces} of {people} were enrolled by an older version of facerec and are not "
                f"used for recognition{lost}: enroll them again from photos")


def outdated(store: Store) -> Outdated:
    """Which stored faces another embedding version made (one query each)."""
    rows = store.faces_not_made_by(EMBEDDING_VERSION)
    if not rows:
        return Outdated()
    by_person = Counter(pid for _, pid in rows)
    totals = {p.id: p.face_count for p in store.people()}
    unrecognised = sum(1 for pid, n in by_person.items() if totals.get(pid, 0) <= n)
    return Outdated(len(rows), dict(by_person), unrecognised)


def current_only(gallery: Gallery, outdated_ids: np.ndarray | list[int]) -> Gallery:
    """*gallery* without the faces in *outdated_ids* (a snapshot or the faces of a change set)."""
    ids = np.asarray(outdated_ids, np.int64)
    if not ids.size:
        return gallery
    keep = ~np.isin(gallery.face_ids, ids)
    return replace(gallery, face_ids=gallery.face_ids[keep], person_ids=gallery.person_ids[keep],
                   embeddings=gallery.embeddings[keep])


def current_gallery(store: Store) -> Gallery:
    """The store's faces that this embedding version made."""
    gallery = store.gallery()
    return current_only(gallery, [f for f, _ in store.faces_not_made_by(EMBEDDING_VERSION)])


def current_changes(store: Store, delta: GalleryDelta, since: int) -> GalleryDelta:
    """A change set without the faces another embedding version made."""
    stale = [f for f, _ in store.faces_not_made_by(EMBEDDING_VERSION, changed_after=since)]
    if not stale:
        return delta
    return replace(delta, faces=current_only(delta.faces, stale),
                   removed_faces=np.union1d(delta.removed_faces, np.asarray(stale, np.int64)))
