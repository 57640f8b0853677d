"""Corrections from the live view: "This is …" and "Not …" on a face the user right-clicked.

The job runs in the pipeline worker (the owner of the recognizer and the tracker) on
the very frame the user clicked, which the GUI still holds: the face is cut out of it
again, checked for size and sharpness and by the same-person checks used at
enrollment, added to the person, and the track is told who it is
(`FaceTracker.correct`), so the box shows the new name from the next frame on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.pipeline.errors import FacerecError, NoFaceError
from app.pipeline.types import SNAPSHOT, Detection, normalize_name

if TYPE_CHECKING:
    import numpy as np

    from app.pipeline.recognition.consistency import Flag
    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.types import FaceResult, Person
    from app.ui.worker import PipelineWorker, Reply

#: Where a face added from the live view came from (shown in the people manager).
SOURCE = "live view"


@dataclass(frozen=True)
class Outcome:
    """What a correction did.

    Exactly one of these holds: ``flag`` is set (nothing changed: the face failed a
    same-person check and the user must decide), or the correction was applied.
    """

    person: Person | None = None  # who the face is now shown as (None: "Not …")
    added: bool = False  # the face joined the person's gallery
    flag: Flag | None = None  # the check that stopped it
    note: str = ""  # why the face was not added (too small, blurred), if it was not
    in_view: bool = True  # False: the track had ended; only the gallery changed


def correction_job(worker: PipelineWorker, frame: np.ndarray, face: FaceResult,
                   name: str | None, *, force: bool = False, add: bool = True):  # noqa: ANN201
    """A worker job: *face* (in *frame*) is *name*, or, with ``name=None``, not its name.

    Parameters
    ----------
    force : bool
        Add the face even if a same-person check flags it (the user said so).
    add : bool
        Add the face to the person's gallery; False only renames the track.
    """
    def job(rec: Recognizer, reply: Reply) -> Outcome:
        tracker = worker.tracker
        if name is None:
            if face.track is None or face.person_id is None:
                raise FacerecError("this face has no name to take back")
            gone = not tracker.correct(face.track, not_person=face.person_id)
            return Outcome(None, in_view=not gone)
        clean = normalize_name(name)
        person = rec.store.person(clean)
        det = Detection(face.box, face.keypoints, face.score, tuple(float(v) for v in face.box))
        try:
            prepared = rec.prepare_face(frame, det, SOURCE, SNAPSHOT) if add else None
        except NoFaceError as exc:
            if person is None:
                raise FacerecError(f"this face cannot start {clean}: {exc}") from None
            prepared, note = None, str(exc)
        else:
            note = ""
        similarity = math.nan
        if prepared is not None:
            emb = prepared.face.embedding
            flag = rec.check_faces(clean, [emb])[0]
            if flag is not None and not force:
                return Outcome(person, flag=flag)
            if person is not None and person.face_count:
                from app.pipeline.recognition.consistency import person_score

                similarity = person_score(emb, rec.index.faces_of(person.id)[1])
            person = rec.enroll(clean, [prepared.face])
        elif person is None:
            raise FacerecError(f"no person named {clean!r}")
        in_view = face.track is not None and tracker.correct(face.track, person.id,
                                                             similarity=similarity)
        return Outcome(person, added=prepared is not None, note=note, in_view=in_view)

    return job
