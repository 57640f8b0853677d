"""The one `Recognizer` that the CLI, the GUI worker and the tests all use."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.config import Paths, Settings, store_location
from app.pipeline.errors import NoFaceError, PersonError
from app.pipeline.imageio import display_name, load_image
from app.pipeline.recognition import consistency
from app.pipeline.recognition.align import EMBEDDING_VERSION, align_face, thumbnail_jpeg
from app.pipeline.recognition.decision import Calibration, Decision, DecisionRule, load_calibration
from app.pipeline.recognition.detector import REFINE_BELOW, FaceDetector, TilePlan, iou, merge_detections
from app.pipeline.recognition.embedder import FaceEmbedder
from app.pipeline.recognition.index import FaceIndex
from app.pipeline.recognition.quality import MIN_SHARPNESS, face_sharpness
from app.pipeline.recognition.tracking import FaceTracker, Track
from app.pipeline.storage.outdated import Outdated, current_changes, current_gallery, outdated
from app.pipeline.storage.store import Store, open_store
from app.pipeline.types import (
    ANY_FACE,
    EMBEDDING_DIM,
    Detection,
    FaceInfo,
    FaceResult,
    FrameResult,
    NewFace,
    Person,
    PersonThumbnail,
    PreparePolicy,
    Refusal,
    normalize_name,
)

log = logging.getLogger(__name__)

#: Smallest face (box height in pixels) accepted for enrollment.
MIN_ENROLL_FACE_PX = 48


@dataclass
class FrameWork:
    """One frame on its way through `Recognizer.find`, `follow` and `name_faces`.

    Attributes
    ----------
    rgb : ndarray
        The frame.
    index : int
        Its position in the stream.
    dets : list of Detection
        Every face found (`find`).
    timings : dict
        Milliseconds per stage so far.
    pairs : list of (Track, Detection)
        The confirmed tracks seen in the frame (`follow`).
    todo : list of (Track, Detection)
        Those to embed now (`follow`).
    coasted : bool
        No whole-frame pass ran: the tracked faces' detections were carried over from
        the frame before, moved with them (`tracking`).
    """

    rgb: np.ndarray
    index: int
    dets: list[Detection]
    timings: dict[str, float]
    pairs: list[tuple[Track, Detection]] = field(default_factory=list)
    todo: list[tuple[Track, Detection]] = field(default_factory=list)
    coasted: bool = False


def refusal_text(reason: Refusal, policy: PreparePolicy, *, faces: int = 0, height: int = 0) -> str:
    """Why a picture gives no face to enroll, in the words *policy* says its reader needs.

    Someone in front of the camera is told what to do ("come closer", "hold still");
    a photo cannot change, so its refusal only says what is wrong with it.
    """
    live = policy.live
    if reason is Refusal.SEVERAL_FACES:
        return f"{faces} faces {'in view' if live else 'in the photo'}; exactly one is needed"
    if reason is Refusal.TOO_SMALL:
        return (f"face too small ({height} px high; at least {MIN_ENROLL_FACE_PX} px needed)"
                + (": come closer" if live else ""))
    if reason is Refusal.BLURRED:
        return "face too blurred" + (": hold still" if live else "")
    return "no face found"


@dataclass(frozen=True)
class PersonFaces:
    """A person's stored faces, oldest first, and the same-person flag of each flagged one."""

    faces: list[FaceInfo]
    flags: dict[int, consistency.Flag]


@dataclass(frozen=True)
class PreparedFace:
    """A face ready to store, with the crop it came from (for previews)."""

    face: NewFace
    crop: np.ndarray
    detection: Detection


def largest_face_embedding(detector: FaceDetector, embedder: FaceEmbedder,
                           rgb: np.ndarray) -> np.ndarray | None:
    """Embedding of the largest face in an image, or None if there is no face."""
    dets = detector.detect(rgb)
    if not dets:
        return None
    vec: np.ndarray = embedder.embed(align_face(rgb, detector.refine(rgb, dets[0])))[0]
    return vec


def subject_face_embedding(detector: FaceDetector, embedder: FaceEmbedder,
                           rgb: np.ndarray) -> np.ndarray | None:
    """Embedding of the face nearest the image's centre (the photo's subject), or None.

    For benchmarks whose photos are centred on the person they are labelled with (LFW's
    are): in 36 of LFW's 7701 View 2 photos the largest face is somebody else's.
    """
    dets = detector.detect(rgb)
    if not dets:
        return None
    h, w = rgb.shape[:2]
    det = min(dets, key=lambda d: (d.box[0] + d.box[2] / 2 - w / 2) ** 2
              + (d.box[1] + d.box[3] / 2 - h / 2) ** 2)
    vec: np.ndarray = embedder.embed(align_face(rgb, detector.refine(rgb, det)))[0]
    return vec


def make_index(store: Store, path: Path | None, settings: Settings, threads: int) -> FaceIndex:
    """The index for a store: its faces of this embedding version (`current_gallery`).

    A local HNSW index, or for a shared gallery above `app.pipeline.storage.shared.DB_SEARCH_ABOVE`
    faces, search in the database (`app.pipeline.storage.shared.RemoteIndex`).
    """
    if hasattr(store, "match_in_database"):
        from app.pipeline.storage.shared import DB_SEARCH_ABOVE, RemoteIndex

        if store.mirror.face_count() > DB_SEARCH_ABOVE:  # type: ignore[attr-defined]
            return RemoteIndex(store, threads)  # type: ignore[arg-type, return-value]
    return FaceIndex(current_gallery(store), path, settings.search, threads)


class Recognizer:
    """Detect, align, embed and identify faces; enroll and manage people.

    Build it with `Recognizer.open`. It is not thread-safe: one thread owns it (the CLI's
    main thread, or the GUI's pipeline worker). The one exception is a stream run by
    `stream.StreamPipeline`, which calls `find` for a frame on the owner thread while
    `name_faces` runs for the previous frame on a helper thread: after
    `use_two_detectors`, those two touch disjoint state (`find`: the detector and the
    tracker's scan state; `name_faces`: the second detector, the embedder, the index, the
    decision rule and the tracks' votes), and the pipeline is drained before anything else
    is called.
    """

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, store: Store,
                 index: FaceIndex, settings: Settings, model_dir: Path | None = None,
                 calibration: Calibration | None = None, index_path: Path | None = None) -> None:
        self.model_dir = model_dir
        self.detector = detector
        self.embedder = embedder
        self.store = store
        self.index = index
        self.settings = settings
        self.rule = DecisionRule(calibration or load_calibration(model_dir), settings.false_accept,
                                 settings.min_similarity)
        self._refiner: FaceDetector | None = None
        self.index_path = index_path if index_path is not None else index.path

    @classmethod
    def open(cls, paths: Paths, settings: Settings | None = None, *,
             model_dir: Path | None = None, calibration: Calibration | None = None,
             store: str | None = None) -> Recognizer:
        """Load the models, open the store and load (or rebuild) the index.

        Parameters
        ----------
        calibration : Calibration, optional
            Replaces the decision rule's calibration shipped with the models.
        store : str, optional
            A shared gallery's URL (``--store``); by default ``FACEREC_STORE``, the
            settings, or the SQLite store in the data directory (`store_location`).
        """
        settings = (settings or Settings.load(paths.settings)).validated()
        paths.ensure()
        t0 = time.perf_counter()
        detector = FaceDetector(settings.detection_confidence, model_dir)
        opened: Store | None = None
        try:
            embedder = FaceEmbedder(settings.threads, model_dir=model_dir)
            calibration = calibration or load_calibration(model_dir)
            opened = open_store(store_location(paths, settings, store), cache_dir=paths.root)
            # A shared gallery's cache has its own index file beside its mirror.
            index_path = getattr(opened, "index_path", paths.index)
            index = make_index(opened, index_path, settings, embedder.threads)
        except BaseException:
            detector.close()
            if opened is not None:
                opened.close()
            raise
        log.info("recognizer ready in %.0f ms: %d people, %d faces, %d threads, store %s",
                 (time.perf_counter() - t0) * 1000, index.people_count, len(index),
                 embedder.threads, opened.label)
        return cls(detector, embedder, opened, index, settings, model_dir, calibration, index_path)

    def close(self) -> None:
        """Release the models and the store."""
        self.index.flush()
        self.detector.close()
        if self._refiner is not None:
            self._refiner.close()
        self.store.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings ---------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """Decision score a face needs to be named, with the people enrolled now."""
        return self.rule.threshold(self.index.people_count)

    def apply_settings(self, settings: Settings) -> None:
        """Take new settings; rebuilds only the parts they affect."""
        settings = settings.validated()
        if settings.threads != self.settings.threads:  # may fail: change nothing until it worked
            self.embedder = FaceEmbedder(settings.threads, model_dir=self.model_dir)
        self.settings = settings
        self.rule = DecisionRule(self.rule.calibration, settings.false_accept, settings.min_similarity)
        self.detector.min_confidence = settings.detection_confidence
        if self._refiner is not None:
            self._refiner.min_confidence = settings.detection_confidence
        self.index.search_mode = settings.search

    # -- recognition ------------------------------------------------------------
    def use_two_detectors(self) -> None:
        """Give the embedding stage a detector of its own for `FaceDetector.refine`.

        Then `name_faces` (which locates small faces again before embedding them) can run
        on one core while `find` runs the next frame's detection on the other. Both
        detectors are the same model with the same settings: results do not change.
        """
        if self._refiner is None:
            self._refiner = FaceDetector(self.detector.min_confidence, self.model_dir)

    @property
    def refiner(self) -> FaceDetector:
        """The detector that locates faces again before they are embedded."""
        return self._refiner if self._refiner is not None else self.detector

    def _crops(self, rgb: np.ndarray, dets: Sequence[Detection], coasted: bool = False
               ) -> tuple[list[np.ndarray], float]:
        """Aligned crops of faces about to be embedded, and the ms spent locating them again.

        Small faces are detected again first (`FaceDetector.refine`); that second look is
        a detector run, reported apart so it can be counted as detection time. In a frame
        that *coasted*, a face the second look leaves as it was is located by the
        whole-frame pass the frame skipped, so its crop is the one it would have had.
        """
        t0 = time.perf_counter()
        located = [self.refiner.refine(rgb, d) for d in dets]
        if coasted and any(a is d for a, d in zip(located, dets)):
            whole = self.refiner.detect(rgb)
            for k, d in enumerate(dets):
                best = max(whole, key=lambda o: iou(o.box, d.box), default=None)
                if located[k] is d and best is not None and iou(best.box, d.box) > 0.3:
                    located[k] = best
        refine_ms = (time.perf_counter() - t0) * 1e3
        return [align_face(rgb, d) for d in located], refine_ms

    def embed_detections(self, rgb: np.ndarray, dets: Sequence[Detection]
                         ) -> tuple[list[np.ndarray], np.ndarray]:
        """Aligned crops and their embeddings for the given detections."""
        crops, _ = self._crops(rgb, dets)
        emb = self.embedder.embed(np.stack(crops)) if crops else np.empty((0, EMBEDDING_DIM), np.float32)
        return crops, emb

    def identify(self, embeddings: np.ndarray) -> list[Decision]:
        """Who each embedded face is, by the decision rule (the one path for every caller)."""
        return self.rule.decide_all(self.index.match(embeddings), self.index.people_count)

    def _face(self, det: Detection, person_id: int | None, similarity: float, score: float,
              track: int | None = None, candidate: int | None = None) -> FaceResult:
        """A face's result, named with the person's *current* name (None: Unknown).

        An Unknown face carries its best candidate's name (the person its similarity
        belongs to), for users who tune how strict recognition is.
        """
        name = self.index.name_of(person_id)
        best = self.index.name_of(candidate) if name is None else None
        return FaceResult(det.box, det.keypoints, det.score, name, similarity,
                          person_id if name is not None else None, track, score,
                          self.rule.calibration.false_accept(score, self.index.people_count), best)

    def detect(self, rgb: np.ndarray, tracker: FaceTracker | None = None) -> list[Detection]:
        """Every face in a frame: the whole frame, then tiles for small faces.

        Without a tracker (a photo) every tile is scanned; with one (a stream) only the
        regions it asks for: around small tracked faces, and the tiles where a new face
        may have appeared.
        Where passes overlap, the whole frame's detection of a face large enough for it
        to place precisely (`REFINE_BELOW`) wins, so a photo gets the same box whether
        it is enrolled or identified; otherwise the highest score wins.
        """
        h, w = rgb.shape[:2]
        if tracker is None:
            whole = self.detector.detect(rgb)
            found = self.detector.detect_regions(rgb, TilePlan.for_still(w, h).regions)
        else:
            # Steady tracked faces may stand in for their regions, or on a frame that
            # coasts, for the whole-frame pass (`tracking`).
            regions, whole, raw = tracker.look(rgb, lambda: self.detector.detect(rgb))
            found = self.detector.detect_regions(rgb, regions)
            if raw is not None:
                tracker.learn(rgb, raw, found)
        sure: list[Detection] = []
        others = list(found)
        for d in whole:
            (sure if d.box[3] >= REFINE_BELOW * max(w, h) else others).append(d)
        return merge_detections(others, first=sure)

    def find(self, rgb: np.ndarray, frame_index: int = 0,
             tracker: FaceTracker | None = None) -> FrameWork:
        """Stage 1 of `process`: every face in the frame (`detect`)."""
        t0 = time.perf_counter()
        dets = self.detect(rgb, tracker)
        return FrameWork(rgb, frame_index, dets, {"detect": (time.perf_counter() - t0) * 1e3},
                         coasted=tracker is not None and tracker.coasted)

    def follow(self, work: FrameWork, tracker: FaceTracker) -> None:
        """Stage 2 of `process` on a stream: scene cut, association, which faces to embed."""
        t0 = time.perf_counter()
        tracker.scene_cut(work.rgb)
        work.pairs = tracker.associate(work.dets, work.index)
        work.todo = [(t, d) for t, d in work.pairs
                     if tracker.needs_embedding(t, work.rgb, work.index)]
        work.timings["track"] = (time.perf_counter() - t0) * 1e3

    def name_faces(self, work: FrameWork, tracker: FaceTracker | None = None) -> FrameResult:
        """Stage 3 of `process`: locate, align, embed and `identify` the faces; name them.

        With a tracker, the faces of ``work.todo`` are embedded and their tracks vote;
        without one (a photo), every face found is embedded and named on its own.
        """
        rgb, frame_index = work.rgb, work.index
        t1 = time.perf_counter()
        todo_dets = [d for _, d in work.todo] if tracker is not None else work.dets
        # Faces about to be embedded, located precisely (small ones are detected again).
        crops, refine_ms = self._crops(rgb, todo_dets, work.coasted)
        t2 = time.perf_counter()
        emb = self.embedder.embed(np.stack(crops)) if crops else None
        t3 = time.perf_counter()
        decisions = self.identify(emb) if emb is not None else []
        if tracker is not None:
            for (track, _), e, dec in zip(work.todo, emb if emb is not None else [], decisions):
                tracker.record(track, e, dec, rgb, frame_index)
                track.candidate = dec.candidate_id
            faces = tuple(self._face(d, t.shown_person, t.shown_similarity, t.score, t.id, t.candidate)
                          for t, d in work.pairs)
        else:
            faces = tuple(self._face(d, dec.person_id, dec.similarity, dec.score,
                                     candidate=dec.candidate_id)
                          for d, dec in zip(work.dets, decisions))
        t4 = time.perf_counter()
        # The second look at small faces is a detector run: counted as detection; the
        # tracker's bookkeeping goes with alignment.
        timings = {"detect": work.timings["detect"] + refine_ms,
                   "align": work.timings.get("track", 0.0) + (t2 - t1) * 1e3 - refine_ms,
                   "embed": (t3 - t2) * 1e3, "search": (t4 - t3) * 1e3}
        timings["total"] = sum(timings.values())
        h, w = rgb.shape[:2]
        return FrameResult(faces, (w, h), timings, frame_index, embedded=len(crops))

    def process(self, rgb: np.ndarray, frame_index: int = 0,
                tracker: FaceTracker | None = None) -> FrameResult:
        """Find and identify every face in an RGB ``uint8`` frame.

        Parameters
        ----------
        rgb : ndarray
            The frame.
        frame_index : int
            Position in its stream.
        tracker : FaceTracker or None
            For a stream: follows faces across frames, embeds them only when needed and
            names them by a vote over recent frames. None for a single photo.

        Returns
        -------
        FrameResult
            One `FaceResult` per face (largest first) and per-stage timings in ms.
        """
        work = self.find(rgb, frame_index, tracker)
        if tracker is not None:
            self.follow(work, tracker)
        return self.name_faces(work, tracker)

    # -- enrollment -------------------------------------------------------------
    def prepare_image(self, rgb: np.ndarray, source: str = "",
                      policy: PreparePolicy = ANY_FACE) -> PreparedFace:
        """Prepare the largest face of an image for enrollment (nothing is stored).

        Parameters
        ----------
        rgb : ndarray
            The image.
        source : str
            Where it came from (a file name, or "camera"), stored with the face.
        policy : PreparePolicy
            What the image must be (one face only, large and sharp enough) and whom
            a refusal speaks to.

        Raises
        ------
        NoFaceError
            Saying why the image cannot be used (its `reason` is a `Refusal`).
        """
        # A sitter fills the frame: the whole-frame pass finds them. A photo may show
        # its subject small, so fall back to the tile scan before giving up.
        dets = self.detector.detect(rgb) or ([] if policy.single_face else self.detect(rgb))
        if not dets:
            raise NoFaceError(refusal_text(Refusal.NO_FACE, policy), Refusal.NO_FACE)
        if policy.single_face and len(dets) > 1:
            raise NoFaceError(refusal_text(Refusal.SEVERAL_FACES, policy, faces=len(dets)),
                              Refusal.SEVERAL_FACES)
        return self.prepare_face(rgb, dets[0], source, policy)

    def prepare_face(self, rgb: np.ndarray, det: Detection, source: str = "",
                     policy: PreparePolicy = ANY_FACE) -> PreparedFace:
        """Prepare one detected face of an image for enrollment (nothing is stored).

        Used for the largest face of a photo (`prepare_image`) and for a face chosen in
        the live view (a correction).

        Raises
        ------
        NoFaceError
            If the policy checks quality and the face is too small or blurred.
        """
        if policy.check_quality and det.box[3] < MIN_ENROLL_FACE_PX:
            raise NoFaceError(refusal_text(Refusal.TOO_SMALL, policy, height=det.box[3]),
                              Refusal.TOO_SMALL)
        refined = self.detector.refine(rgb, det)
        if policy.check_quality and face_sharpness(rgb, refined) < MIN_SHARPNESS:
            raise NoFaceError(refusal_text(Refusal.BLURRED, policy), Refusal.BLURRED)
        crop = align_face(rgb, refined)
        emb = self.embedder.embed(crop)
        return PreparedFace(NewFace(emb[0], thumbnail_jpeg(crop), source, EMBEDDING_VERSION),
                            crop, det)

    def prepare_file(self, path: str | Path, policy: PreparePolicy = ANY_FACE, *,
                     label: str | None = None) -> PreparedFace:
        """Read an image file and prepare its largest face (see `prepare_image`).

        Parameters
        ----------
        label : str, optional
            How messages name the file (by default its path; a dialog that lists file
            names passes the name).

        Raises
        ------
        ImageError, NoFaceError
            Starting with the file's label.
        """
        label = display_name(path) if label is None else label
        rgb = load_image(path, label=label)
        try:
            return self.prepare_image(rgb, display_name(Path(path).name), policy)
        except NoFaceError as exc:
            raise NoFaceError(f"{label}: {exc}", exc.reason) from None

    def enroll(self, name: str, faces: Sequence[NewFace], *, new_person: bool = False) -> Person:
        """Store faces for a person in one transaction and make them searchable at once.

        Parameters
        ----------
        new_person : bool
            Refuse if *name* is already enrolled (adding to someone is explicit).
        """
        pid, _ = self.store.add_faces(name, faces, must_be_new=new_person)
        return self._changed(pid)

    def enroll_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> dict[str, list[int]]:
        """Store faces for several people in one transaction (a folder import).

        Returns the face ids added, by the stored name of each person added to.
        """
        added = self.store.add_many(batches)
        self.refresh()
        return added

    def rename(self, old: str, new: str) -> Person:
        """Rename a person; recognition uses the new name immediately."""
        return self._changed(self.store.rename(old, new).id)

    def remove(self, name: str) -> Person:
        """Delete a person and all their faces from the store and the index."""
        person = self.store.person(name)
        if person is None:
            raise PersonError(f"no person named {normalize_name(name)!r}")
        self.store.remove(name)
        self.refresh()
        return person

    def check_faces(self, name: str | None, embeddings: Sequence[np.ndarray] | np.ndarray,
                    exclude_faces: Sequence[int] = ()) -> list[consistency.Flag | None]:
        """Same-person checks for faces about to be saved together for *name*.

        One `consistency.Flag` (or None) per face: it does not look like the person's
        other faces, or it looks like someone else. Nothing is stored. The index is
        brought up to date first, so changes by other processes count. ``name=None``
        checks faces for a person not named yet (a new one).
        """
        clean = normalize_name(name) if name is not None else None
        self.refresh()
        person = self.store.person(clean) if clean is not None else None
        vecs = np.asarray(embeddings, np.float32).reshape(-1, EMBEDDING_DIM)
        label = person.name if person else clean or "this person"
        return consistency.check(self.index, label, person.id if person else None, vecs,
                                 exclude_faces)

    def check_move(self, face_ids: Sequence[int], to_name: str) -> list[consistency.Flag | None]:
        """Same-person checks for stored faces about to be given to *to_name*.

        Raises
        ------
        PersonError
            If a face does not exist.
        """
        self.refresh()
        vecs, checked = [], []
        for k, face_id in enumerate(face_ids):
            info = self.store.face(face_id)
            if info is None:
                raise PersonError(f"no face with id {face_id}")
            ids, stored = self.index.faces_of(info.person_id)
            if (ids == face_id).any():  # a face of an older version is not compared
                vecs.append(stored[ids == face_id][0])
                checked.append(k)
        flags: list[consistency.Flag | None] = [None] * len(face_ids)
        if vecs:
            for k, flag in zip(checked, self.check_faces(to_name, vecs, exclude_faces=face_ids)):
                flags[k] = flag
        return flags

    def audit(self, name: str) -> dict[int, consistency.Flag]:
        """The flags of a person's stored faces (face id -> Flag), each against the rest.

        A face an older embedding version made is flagged as such (`consistency.OUTDATED`).
        """
        person = self.store.person(name)
        if person is None:
            raise PersonError(f"no person named {normalize_name(name)!r}")
        self.refresh()
        flags = consistency.audit(self.index, person.name, person.id)
        for face in self.store.faces_of(person.id):
            if face.embedder != EMBEDDING_VERSION:
                flags[face.id] = consistency.outdated_flag()
        return flags

    def faces_of(self, name: str) -> list[FaceInfo]:
        """A person's stored faces, oldest first."""
        person = self.store.person(name)
        if person is None:
            raise PersonError(f"no person named {normalize_name(name)!r}")
        return self.store.faces_of(person.id)

    def remove_faces(self, face_ids: Sequence[int]) -> None:
        """Delete single faces from the store and the index (the person stays)."""
        self.store.remove_faces(face_ids)
        self.refresh()

    def move_faces(self, face_ids: Sequence[int], to_name: str, *, create: bool = True) -> Person:
        """Give faces to another person (created if missing and *create*)."""
        return self._changed(self.store.move_faces(face_ids, to_name, create=create).id)

    def _changed(self, person_id: int) -> Person:
        """After a change: bring the index up to date and return the person as stored."""
        self.refresh()
        person = self.store.person_by_id(person_id)
        if person is None:  # removed by another process in between
            raise PersonError("that person was removed meanwhile")
        return person

    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        return self.store.people()

    def people_with_thumbnails(self) -> list[PersonThumbnail]:
        """Everyone enrolled, by name, each with the thumbnail of their first face."""
        return [PersonThumbnail(p, self.store.thumbnail(p.id)) for p in self.store.people()]

    def person_faces(self, name: str) -> PersonFaces:
        """A person's stored faces, oldest first, with the same-person flags (`audit`)."""
        return PersonFaces(self.faces_of(name), self.audit(name))

    def reload(self) -> None:
        """Rebuild the in-memory index from the whole store."""
        self.index = make_index(self.store, self.index_path, self.settings, self.embedder.threads)

    def refresh(self) -> bool:
        """Catch up with every change to the store since the index's generation.

        Changes made here and by other processes (the CLI, another window) take the same
        path: only what changed is read and applied. True if anything changed.
        """
        if self.store.generation == self.index.generation:
            return False
        delta = self.store.changes_since(self.index.generation)
        if delta is None:
            log.info("the store's history does not reach the index; reloading it")
            self.reload()
        else:
            self.index.apply(current_changes(self.store, delta, self.index.generation))
            self.index.flush()
        return True

    def outdated(self) -> Outdated:
        """The stored faces an older embedding version made (not used for recognition)."""
        return outdated(self.store)
