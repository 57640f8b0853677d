"""Plain value types passed between the pipeline and its front ends.

They are frozen and own their arrays, so a result can cross from the worker thread to
the GUI thread without copying or locking. The gallery's types (people, faces, the
recognition log's rows, what a name may be, the embedding size) live here rather than
in the store, so the window and the search index need not import the store.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import numpy as np

from app.pipeline.errors import PersonError

#: Size of a face embedding (FaceNet-512): the one place it is written down.
EMBEDDING_DIM = 512
MAX_NAME_LENGTH = 64

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
    (`app.pipeline.recognition.decision`), and ``false_accept`` the estimated share of strangers who
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


@dataclass(frozen=True)
class Person:
    """One enrolled person."""

    id: int
    name: str
    face_count: int
    created: float


@dataclass(frozen=True)
class NewFace:
    """A face to add: its embedding, a small JPEG thumbnail and where it came from.

    ``embedder`` names the pipeline that made the embedding (model and crop), so faces
    made by an older pipeline can be found and re-enrolled.
    """

    embedding: np.ndarray
    thumbnail: bytes | None = None
    source: str = ""
    embedder: str = ""


@dataclass(frozen=True)
class FaceInfo:
    """One stored face, without its embedding (for lists and management)."""

    id: int
    person_id: int
    thumbnail: bytes | None
    source: str
    created: float
    embedder: str


@dataclass(frozen=True)
class Sighting:
    """One row of the recognition log: an appearance of a person, or a stranger's track.

    Attributes
    ----------
    id : str
        Chosen by the writer (a UUID); writing the same row again updates it, so a log
        that is flushed repeatedly, or replayed after a failure, never duplicates rows.
    person_id : int or None
        Who was seen; None for a stranger.
    started, last_seen : float
        Wall-clock times (seconds since the epoch) of the first and last sighting.
    frames : int
        Frames in which the face was seen.
    similarity : float
        The best score of the appearance.
    source : str
        The camera or file.
    track : int or None
        The tracker's id for the face, if any.
    station : str
        The workstation that saw it.
    name : str or None
        The person's *current* name when read back (None for a stranger); ignored when
        writing.
    """

    id: str
    person_id: int | None
    started: float
    last_seen: float
    frames: int
    similarity: float
    source: str = ""
    track: int | None = None
    station: str = ""
    name: str | None = None


@dataclass(frozen=True)
class Gallery:
    """A snapshot of every stored embedding, for building the search index."""

    face_ids: np.ndarray  # (n,) int64
    person_ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, EMBEDDING_DIM) float32, L2-normalised
    names: dict[int, str]  # person id -> name
    generation: int


@dataclass(frozen=True)
class GalleryDelta:
    """What changed in the gallery after a given generation, up to `generation`.

    ``faces`` holds every face added *or moved to another person* since then (with its
    current person); a cache upserts them, drops ``removed_faces``, renames the people
    in ``faces.names`` and forgets ``removed_people``.
    """

    faces: Gallery
    removed_faces: np.ndarray  # (k,) int64
    removed_people: list[int]
    generation: int

    @property
    def empty(self) -> bool:
        """True if nothing changed."""
        return (not self.faces.face_ids.size and not self.removed_faces.size
                and not self.removed_people and not self.faces.names)


def name_key(name: str) -> str:
    """The lookup key of a (normalised) name: NFC, then lower case, so "Émile" finds "émile".

    Plain lower case, not `str.casefold`: case folding expands "ß" to "ss", which would
    make "Anna Weiß" and "ANNA WEISS" (two spellings that are two families in German)
    one person. The result is NFC again (lowering can leave combining sequences).
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).lower())


#: Format characters a name may hold: ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER, which
#: spell words in Persian, Hindi and other scripts, and join emoji sequences (UAX #31,
#: section 2.3, allows them in identifiers).
_JOINERS = frozenset("\u200c\u200d")
#: Characters that are not control or format characters yet show nothing (UTS #39's
#: "default ignorable" and blank characters): a name of only these looks empty.
_BLANKS = frozenset(
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u2800"  # BRAILLE PATTERN BLANK
    "\u034f"  # COMBINING GRAPHEME JOINER
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180b\u180c\u180d\u180f"  # Mongolian variation selectors
    "\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07"
    "\ufe08\ufe09\ufe0a\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f"  # variation selectors
)


def _visible(c: str) -> bool:
    """Whether a character shows something: not a space, mark, joiner or blank."""
    cat = unicodedata.category(c)
    return not (cat[0] in "ZCM" or c in _BLANKS or 0xE0100 <= ord(c) <= 0xE01EF)


def normalize_name(name: str) -> str:
    """Validate and canonicalise a person's name.

    Follows Unicode's identifier guidance (UAX #31, UTS #39): any script, with ZWNJ and
    ZWJ allowed inside a name (Persian "Mehr\u200cnaz", emoji sequences); no control,
    format (bidi controls among them), private-use, surrogate or unassigned characters;
    and at least one visible character (a name of Hangul fillers or braille blanks would
    show as nothing).

    Raises
    ------
    PersonError
        If the name is empty, invisible, too long or contains control characters.
    """
    clean = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not clean:
        raise PersonError("a name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise PersonError(f"a name can have at most {MAX_NAME_LENGTH} characters")
    bad = [c for c in clean if unicodedata.category(c)[0] == "C" and c not in _JOINERS]
    if bad:
        raise PersonError(f"a name cannot contain control or invisible format characters "
                          f"(U+{ord(bad[0]):04X})")
    if clean[0] in _JOINERS or clean[-1] in _JOINERS:
        raise PersonError("a name cannot start or end with a joiner (U+200C, U+200D)")
    if not any(_visible(c) for c in clean):
        raise PersonError("a name must have at least one visible character")
    return clean


class PersonThumbnail(NamedTuple):
    """An enrolled person and the thumbnail of their first face (None if there is none)."""

    person: Person
    thumbnail: bytes | None


class Refusal(Enum):
    """Why a picture gives no face to enroll (`errors.NoFaceError.reason`)."""

    NO_FACE = "no face"
    SEVERAL_FACES = "several faces"
    TOO_SMALL = "too small"
    BLURRED = "blurred"


@dataclass(frozen=True)
class PreparePolicy:
    """What a picture must be for its face to be enrolled, and whom a refusal speaks to.

    Attributes
    ----------
    single_face : bool
        Refuse a picture with more than one face: the largest face of a group photo may
        be someone else, stored under this name. Without it the largest face is taken,
        and a photo whose subject is small is also scanned in tiles.
    check_quality : bool
        Refuse faces too small or too blurred to be recognised reliably.
    live : bool
        The person is in front of the camera: a refusal says what to do ("come closer",
        "hold still"). Otherwise it speaks of a photo, which cannot change.
    """

    single_face: bool = False
    check_quality: bool = False
    live: bool = False


#: The largest face of a picture, unchecked (evaluations, benchmarks, tests).
ANY_FACE = PreparePolicy()
#: A photo file given for a named person on the command line: its largest face, large and sharp.
PHOTO = PreparePolicy(check_quality=True)
#: A photo added to a person in the window: exactly one face, large and sharp.
PHOTO_OF_ONE = PreparePolicy(single_face=True, check_quality=True)
#: A snapshot of the live view: exactly one face in view, large and sharp.
SNAPSHOT = PreparePolicy(single_face=True, check_quality=True, live=True)
