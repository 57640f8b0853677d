"""Follow faces from frame to frame, so a face in view is not re-embedded every frame.

A track is a face followed by box overlap (IoU) between consecutive frames. It is
embedded when it starts, when the face becomes clearly larger or sharper than when it
was last embedded, and at a bounded interval otherwise. Its identity is a vote over its
recent embeddings, so a name does not flicker and one bad frame (motion blur, a turned
head) cannot name the wrong person.

The tracker also says where the detector should look beyond the whole frame: a region
around each small tracked face (so a face too small for the whole-frame pass stays found,
and placed precisely, every frame; one region serves every small face it holds), and the
tiles of the frame where a new small face may have appeared (see `scan.TileScheduler`).

A small face that the whole-frame pass does find still gets its region: that pass places
it too coarsely to follow (on the bench's 720p scene of five 147 px faces its box is
0.79-0.93 of the region's height, and jitters by up to a tenth of the height from frame to
frame). But while the face holds steady the region need not run on every frame. When it
runs, the tracker keeps its detection and a small grey patch around the face (a `_Lens`);
on the next frames the region's detection, moved by the face's motion measured on that
patch (phase correlation), stands in for the region's, as long as the motion was measured
surely and the whole-frame pass confirms the face there at its size. The region runs again
after `LENS_FRAMES` frames, and at once when that fails. A face about to be embedded is
detected once more anyway (`FaceDetector.refine`), around the stand-in's box.

Larger faces get a lens too: their whole-frame detection and patch. When every tracked face
was confirmed by the last detector pass (the last frame that did not coast), its motion
since is measured surely (`COAST_MIN_RESPONSE`) and is small (`COAST_MAX_MOVE`), and the
tile scan saw nothing change away from the tracked faces, the frame *coasts*: the faces'
detections, moved with them, stand in for the whole-frame pass and the regions (the tiles
due are still scanned). At most `COAST_RUN` frames in a row coast, so the whole-frame pass
still runs on one frame in ``COAST_RUN + 1`` at least, and a new large face is found at most
`COAST_RUN` frames later (sooner when it appears away from the tracked faces: that change
stops the coasting). A large face embedded in a coasting frame is located by a whole-frame
pass first (`Recognizer.name_faces`), so its crop is the one it would have had.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from app.pipeline.recognition.decision import Decision
from app.pipeline.recognition.detector import TILE_PER_FACE, Region, iou, square_around
from app.pipeline.recognition.scan import TileScheduler, frame_cells
from app.pipeline.types import Detection

#: Frames a track survives without a matching detection.
MAX_MISSED = 8
#: Re-embed a track at least this often (frames), to keep the vote current.
REEMBED_EVERY = 8
#: Until a track has this many votes, embed it every other frame.
WARMUP_VOTES = 3
#: Votes remembered per track.
VOTES = 7
#: Re-embed when the face is this much taller than at the last embedding...
GROWTH = 1.25
#: ...or this much sharper (variance of the Laplacian of a small grey patch).
SHARPER = 1.5
#: Boxes overlapping at least this much are the same face in consecutive frames...
MIN_IOU = 0.3
#: ...if their heights differ by less than this factor (a face does not grow by half
#: in one frame; a different person in the same spot after a cut does).
MAX_GROWTH_PER_FRAME = 1.3
#: Two embeddings of one track less similar than this are different people: the track
#: splits. The same cut-off as `consistency.SAME_PERSON_MIN` (consecutive views of one
#: face are far closer than two photos). What it was measured on and what it costs on
#: LFW: README.md, "How it decides" (Video) and "Same-person checks".
SAME_FACE_MIN = 0.39
#: Mean absolute difference (grey levels) of tiny thumbnails of consecutive frames
#: above which the picture cut to another scene: every track ends.
SCENE_CUT = 40.0
#: A track is reported once seen in this many frames, unless its detection is surer
#: than `SURE_SCORE`: a one-frame detection in clutter is usually not a face.
CONFIRM_HITS = 2
SURE_SCORE = 0.8
#: Most tiles scanned per frame to discover small faces (see `scan.TileScheduler`).
TILES_PER_FRAME = 4
#: The whole-frame pass reliably finds faces taller than this fraction of the longer
#: side; smaller tracked faces get a region every frame (the whole-frame pass misses
#: them, or places them coarsely: a 150 px face in 720p came back 194 px high).
WHOLE_FRAME_MIN_FACE = 0.2
#: A tracked face's region is this many times its height: the face is seen at
#: 128 / (TILE_PER_FACE * 0.8) = 25 px at model scale, with room to move.
REGION_PER_FACE = TILE_PER_FACE * 0.8
#: A region chosen for one face serves another only if that face stays whole in it
#: after moving by this fraction of its height (its own region leaves it 2 heights).
REGION_SLACK = 0.5
#: A `_Lens` serves this many frames; then the face's region runs again. (The region
#: runs on at most one frame in this many for a steady face instead of on every frame.)
#: Its stand-in is checked on every frame (the motion measured surely, the whole-frame
#: pass finding the face there at its size), so a longer life only costs precision when
#: the face turns or tilts in place; a face about to be embedded is located again anyway.
#: 12 instead of 6: 0.49 -> 0.24 region runs a frame on the bench's 720p scene of five
#: 147 px faces, with the same names.
LENS_FRAMES = 12
#: The motion of a face is measured in a window this many times its height...
LENS_WINDOW = 1.6
#: ...shrunk to a square patch this wide.
LENS_PATCH = 64
#: The region's detection, moved, stands in for it only if the motion was measured this
#: surely (phase correlation's peak response; 0.6-0.95 for a face drifting a few pixels)...
LENS_MIN_RESPONSE = 0.3
#: ...and the whole-frame pass finds the face where it moved (IoU of its box with the
#: whole-frame box of the lens's frame, moved alike)...
LENS_MIN_IOU = 0.6
#: ...at a height within this factor of its height then.
LENS_MAX_SCALE = 1.1
#: A frame coasts (no whole-frame pass, no regions) only if every tracked face was
#: confirmed by a detector pass in the frame before, moved by at most this fraction of
#: its height...
COAST_MAX_MOVE = 0.1
#: ...as surely as this (phase correlation's response).
COAST_MIN_RESPONSE = 0.5
#: Most frames in a row that coast: three of four frames at most skip the whole-frame
#: pass. A new large face that changes the picture only where the tracked faces are (one
#: stepping in front of the sitter) is found up to this many frames later (100 ms at 30 fps).
COAST_RUN = 3


@dataclass(frozen=True)
class Correction:
    """The user said who a track is ("This is ...") or is not ("Not ...").

    It holds for the track it was made on: if the track restarts on another face (see
    `FaceTracker.record`) the correction no longer applies.
    """

    track_id: int
    person_id: int | None = None  # shown from now on
    not_person: int | None = None  # never shown for this track
    similarity: float = 0.0  # shown with person_id until the vote agrees


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    det: Detection
    last_seen: int
    hits: int = 1
    embedded_at: int = -(10**9)
    embedded_height: float = 0.0
    embedded_sharpness: float = 0.0
    # (person named by the decision rule or None, similarity, decision score) per embedding
    votes: deque[tuple[int | None, float, float]] = field(default_factory=lambda: deque(maxlen=VOTES))
    person_id: int | None = None
    similarity: float = 0.0
    score: float = -1.0  # decision score (`app.pipeline.recognition.decision`) behind the identity
    embedding: np.ndarray | None = None
    suspect: np.ndarray | None = None  # an embedding unlike the track's, awaiting a second look
    candidate: int | None = None  # the best match of the latest embedding, named or not
    correction: Correction | None = None  # the user's word on who this is (see `correct`)

    @property
    def shown_person(self) -> int | None:
        """The identity to display: none while the face is in doubt; the user's correction wins."""
        voted = self.person_id if self.suspect is None else None
        c = self.correction
        if c is None or c.track_id != self.id:  # none, or the track restarted on someone else
            return voted
        if c.person_id is not None:
            return c.person_id
        return None if voted == c.not_person else voted

    @property
    def shown_similarity(self) -> float:
        """The similarity to display with `shown_person`."""
        c = self.correction
        if (c is not None and c.track_id == self.id and c.person_id is not None
                and self.person_id != c.person_id):
            return c.similarity  # the vote has not caught up with the correction yet
        return self.similarity

    @property
    def confirmed(self) -> bool:
        """Seen often enough, or surely enough, to be shown and embedded."""
        return self.hits >= CONFIRM_HITS or self.det.score >= SURE_SCORE


@dataclass(frozen=True)
class _Lens:
    """A small face as its region placed it, to stand in for the region on later frames.

    Where the face went since is measured on the pixels: a grey patch around it, kept
    from the frame the region ran on, is matched to the same window of the new frame by
    phase correlation (0.2 ms), so the box follows the face to a pixel. The whole-frame
    pass only confirms that the face is still there at its size: the box it gives for a
    small face jitters by up to a tenth of its height from frame to frame.
    """

    at: int  # the frame (`FaceTracker._looks`) it was measured in
    seen: int  # the last frame a detector pass confirmed the face in
    region: Detection  # the region's detection then
    whole: Detection  # the whole-frame pass's detection of the face then
    window: Region  # where the patch was taken
    patch: np.ndarray  # LENS_PATCH x LENS_PATCH grey float32

    @classmethod
    def measure(cls, at: int, rgb: np.ndarray, whole: Detection, region: Detection) -> _Lens:
        h, w = rgb.shape[:2]
        window = square_around(region.raw_box, round(region.raw_box[3] * LENS_WINDOW), w, h)
        return cls(at, at, region, whole, window, _grey_patch(rgb, window))

    def shift(self, rgb: np.ndarray) -> tuple[float, float, float]:
        """How far the face moved since (x, y in pixels), and how sure that is (0-1)."""
        (dx, dy), response = cv2.phaseCorrelate(self.patch, _grey_patch(rgb, self.window),
                                                _hanning())
        scale = self.window[2] / LENS_PATCH
        return dx * scale, dy * scale, float(response)

    def view(self, dx: float, dy: float, score: float, width: int, height: int) -> Detection:
        """The region's detection moved by (dx, dy), with the whole-frame pass's *score*."""
        x, y, bw, bh = self.region.raw_box
        rx, ry = x + dx, y + dy
        x0, y0 = max(0, int(rx)), max(0, int(ry))
        x1, y1 = min(width, int(rx + bw)), min(height, int(ry + bh))
        kps = self.region.keypoints + np.array([dx, dy], np.float32)
        return Detection((x0, y0, max(0, x1 - x0), max(0, y1 - y0)), kps, score, (rx, ry, bw, bh))


def _small_grey(patch: np.ndarray, size: int) -> np.ndarray:
    """*patch* (RGB) shrunk to a *size*-wide square, in grey (``uint8``).

    Bilinear to twice the size, then an area average: 0.03-0.05 ms for a 300-470 px
    patch, against 0.33-0.75 ms for an area average straight from the frame.
    """
    twice = cv2.resize(patch, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(twice, (size, size), interpolation=cv2.INTER_AREA)
    grey: np.ndarray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return grey


def _grey_patch(rgb: np.ndarray, window: Region) -> np.ndarray:
    """The window of the frame as a `LENS_PATCH`-wide grey ``float32`` patch."""
    x0, y0, side = window
    return _small_grey(rgb[y0:y0 + side, x0:x0 + side], LENS_PATCH).astype(np.float32)


_HANNING: list[np.ndarray] = []


def _hanning() -> np.ndarray:
    if not _HANNING:
        _HANNING.append(cv2.createHanningWindow((LENS_PATCH, LENS_PATCH), cv2.CV_32F))
    return _HANNING[0]


class FaceTracker:
    """Associate detections with tracks and decide each track's identity by vote.

    One tracker belongs to one stream; start a new one when the source changes.
    """

    def __init__(self, tiles_per_frame: int = TILES_PER_FRAME) -> None:
        self.tracks: list[Track] = []
        self.tiles_per_frame = tiles_per_frame
        self._next_id = 1
        self._scan: TileScheduler | None = None
        self._thumb: np.ndarray | None = None
        # Where the tracks were as of the last association. `regions` reads only this, so
        # the next frame's detection may run while `record` updates this frame's tracks.
        self._seen: list[Detection] = []
        self._seen_ids: list[int] = []
        # Per track id: its small face as its region last placed it (see module doc).
        # Read and written by `look` and `learn` only, on the thread that runs detection.
        self._lenses: dict[int, _Lens] = {}
        self._looks = 0  # frames `look` has seen
        #: Whether the last frame coasted (`look`): no whole-frame pass ran.
        self.coasted = False
        self._coasting = 0  # frames in a row that coasted, up to the last one
        self._cells: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its cells)

    def reset(self) -> None:
        """Forget every track (e.g. after a seek or a source change); rescan every tile."""
        self.tracks.clear()
        self._seen = []
        self._seen_ids = []
        self._lenses.clear()
        self.coasted = False
        self._coasting = 0
        if self._scan is not None:
            self._scan.reset()

    def correct(self, track_id: int, person_id: int | None = None, *,
                not_person: int | None = None, similarity: float = 0.0) -> bool:
        """Remember the user's correction of a track; False if the track has ended.

        The track shows *person_id* from its next frame on (or stops showing
        *not_person*), and is embedded again at once, so its vote catches up with the
        gallery the correction may have changed.
        """
        for t in self.tracks:
            if t.id == track_id:
                t.correction = Correction(track_id, person_id, not_person, similarity)
                t.embedded_at = -(10**9)
                return True
        return False

    # -- where to look ------------------------------------------------------------
    def regions(self, rgb: np.ndarray) -> list[Region]:
        """Regions to run the detector on in this frame, besides the whole frame.

        `look` with a whole-frame pass that finds nothing (so no stand-ins).
        """
        return self.look(rgb, list)[0]

    def look(self, rgb: np.ndarray, whole_pass: Callable[[], list[Detection]]
             ) -> tuple[list[Region], list[Detection], list[Detection] | None]:
        """Where to run the detector in this frame, and what stands in for the rest.

        If every tracked face holds steady and nothing else changed, the frame coasts
        (module doc): the tracked faces' detections moved with them stand in for the
        whole-frame pass. Otherwise *whole_pass* runs, and a region is chosen around
        each small tracked face, a square `REGION_PER_FACE` times its height, unless a
        square already chosen holds the face whole and sees it no smaller than the
        tile scan that found it did (then that run finds it as well), or a stand-in
        replaces it. Then the tiles `scan.TileScheduler` picks.

        Returns
        -------
        regions : list of Region
            To scan.
        whole : list of Detection
            The whole-frame pass's detections, each that confirms a stand-in replaced by
            it; on a coasting frame, the stand-ins of every tracked face.
        raw : list of Detection or None
            The whole-frame pass's own detections, for `learn`; None when coasting.
        """
        h, w = rgb.shape[:2]
        if self._scan is None or self._scan.size != (w, h):
            self._scan = TileScheduler(w, h)
        cells = frame_cells(rgb)
        self._cells = (rgb, cells)
        self._looks += 1
        tiles = self._scan.take(cells, self._seen, self.tiles_per_frame)
        coasted = (None if self._scan.changed_away or self._coasting >= COAST_RUN
                   else self._coast(rgb))
        self.coasted = coasted is not None
        self._coasting = self._coasting + 1 if self.coasted else 0
        if coasted is not None:
            return tiles, coasted, None
        whole = whole_pass()
        out: list[Region] = []
        views = list(whole)
        taken: set[int] = set()
        long_side = max(w, h)
        for tid, seen in zip(self._seen_ids, self._seen):
            box = seen.raw_box
            if box[3] >= WHOLE_FRAME_MIN_FACE * long_side:
                continue
            stand_in = self._stand_in(tid, rgb, whole, taken)
            if stand_in is not None:
                views[stand_in[0]] = stand_in[1]
                taken.add(stand_in[0])
                continue
            coarsest = max(128, round(box[3] * TILE_PER_FACE))
            if not any(_holds(r, box, coarsest) for r in out):
                out.append(square_around(box, max(128, round(box[3] * REGION_PER_FACE)), w, h))
        return out + tiles, views, whole

    def _coast(self, rgb: np.ndarray) -> list[Detection] | None:
        """Every tracked face's stand-in, if each was seen by the last pass and holds still."""
        if not self._seen:
            return None
        h, w = rgb.shape[:2]
        last_pass = self._looks - 1 - self._coasting  # the last frame that did not coast
        out = []
        for tid, seen in zip(self._seen_ids, self._seen):
            lens = self._lenses.get(tid)
            if lens is None or lens.seen != last_pass or self._looks - lens.at >= LENS_FRAMES:
                return None
            dx, dy, sure = lens.shift(rgb)
            if sure < COAST_MIN_RESPONSE or math.hypot(dx, dy) > COAST_MAX_MOVE * seen.raw_box[3]:
                return None
            out.append(lens.view(dx, dy, lens.whole.score, w, h))
        return out

    def _stand_in(self, tid: int, rgb: np.ndarray, whole: Sequence[Detection], taken: set[int]
                  ) -> tuple[int, Detection] | None:
        """A steady face's stand-in for its region (module doc), or None.

        The region's detection moved with the face, and the index in *whole* of the
        whole-frame detection that confirms it.
        """
        lens = self._lenses.get(tid)
        if lens is None or self._looks - lens.at >= LENS_FRAMES:
            return None
        dx, dy, sure = lens.shift(rgb)
        if sure < LENS_MIN_RESPONSE:
            return None
        x, y, bw, bh = lens.whole.raw_box
        expected = (x + dx, y + dy, bw, bh)
        best: tuple[float, int] | None = None
        for k, d in enumerate(whole):
            if k in taken or not 1 / LENS_MAX_SCALE <= d.raw_box[3] / bh <= LENS_MAX_SCALE:
                continue
            overlap = iou(d.raw_box, expected)
            if overlap >= LENS_MIN_IOU and (best is None or overlap > best[0]):
                best = (overlap, k)
        if best is None:
            return None
        self._lenses[tid] = replace(lens, seen=self._looks)
        h, w = rgb.shape[:2]
        return best[1], lens.view(dx, dy, whole[best[1]].score, w, h)

    def learn(self, rgb: np.ndarray, whole: Sequence[Detection], found: Sequence[Detection]
              ) -> None:
        """Measure the lens of each tracked face this frame's passes found.

        *whole* is the whole-frame pass's own detections (`look`'s *raw*), *found* the
        detections in the regions it returned. A small face's lens needs both (the
        region's detection places it); a larger one's is its whole-frame detection.
        """
        long_side = max(self._scan.size) if self._scan is not None else 0
        for tid, seen in zip(self._seen_ids, self._seen):
            w = max(whole, key=lambda d: iou(d.box, seen.box), default=None)
            if w is None or iou(w.box, seen.box) <= MIN_IOU or w.raw_box[3] <= 0:
                continue
            if seen.raw_box[3] >= WHOLE_FRAME_MIN_FACE * long_side:
                self._lenses[tid] = _Lens.measure(self._looks, rgb, w, w)
                continue
            r = max(found, key=lambda d: iou(d.box, seen.box), default=None)
            if r is not None and iou(r.box, seen.box) > MIN_IOU:
                self._lenses[tid] = _Lens.measure(self._looks, rgb, w, r)

    # -- association ----------------------------------------------------------------
    def scene_cut(self, rgb: np.ndarray) -> bool:
        """True (and every track ends) if this frame cut to a different picture."""
        cells = self._cells[1] if self._cells is not None and self._cells[0] is rgb else frame_cells(rgb)
        thumb = cv2.resize(cells, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._thumb = self._thumb, thumb
        if prev is not None and float(np.abs(thumb - prev).mean()) > SCENE_CUT:
            self.reset()
            return True
        return False

    def associate(self, dets: list[Detection], frame_index: int) -> list[tuple[Track, Detection]]:
        """Match this frame's detections to tracks (greedy by IoU); start new tracks.

        Returns the confirmed tracks seen in this frame, largest face first. Tracks
        unseen for more than `MAX_MISSED` frames are dropped.
        """
        def same_face(t: Track, d: Detection) -> float:
            ratio = d.raw_box[3] / max(t.det.raw_box[3], 1e-6)
            if not 1 / MAX_GROWTH_PER_FRAME <= ratio <= MAX_GROWTH_PER_FRAME:
                return 0.0
            return iou(t.det.box, d.box)

        pairs = sorted(((same_face(t, d), ti, di) for ti, t in enumerate(self.tracks)
                        for di, d in enumerate(dets)), reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        out: list[tuple[Track, Detection]] = []
        for overlap, ti, di in pairs:
            if overlap < MIN_IOU:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            track = self.tracks[ti]
            track.det, track.last_seen = dets[di], frame_index
            track.hits += 1
            out.append((track, dets[di]))
        for di, d in enumerate(dets):
            if di not in used_d:
                track = Track(self._next_id, d, frame_index)
                self._next_id += 1
                self.tracks.append(track)
                out.append((track, d))
        self.tracks = [t for t in self.tracks if frame_index - t.last_seen <= MAX_MISSED]
        self._seen = [t.det for t in self.tracks]
        self._seen_ids = [t.id for t in self.tracks]
        self._lenses = {t: lens for t, lens in self._lenses.items() if t in self._seen_ids}
        out = [(t, d) for t, d in out if t.confirmed]
        out.sort(key=lambda td: td[1].area, reverse=True)
        return out

    # -- embedding policy and vote ----------------------------------------------------
    def needs_embedding(self, track: Track, rgb: np.ndarray, frame_index: int) -> bool:
        """Whether this frame's view of the face should be embedded (see module doc)."""
        age = frame_index - track.embedded_at
        if track.suspect is not None:  # settle the doubt on the very next frame
            return True
        if len(track.votes) < WARMUP_VOTES:
            return age >= 2
        if age >= REEMBED_EVERY:
            return True
        h = track.det.raw_box[3]
        if h >= GROWTH * track.embedded_height:
            return True
        return age >= 2 and patch_sharpness(rgb, track.det) >= SHARPER * track.embedded_sharpness

    def record(self, track: Track, embedding: np.ndarray, decision: Decision,
               rgb: np.ndarray, frame_index: int) -> None:
        """Add one embedding's verdict to the track's vote and update its identity.

        An embedding unlike the track's last one puts the track in doubt: it shows no
        name and is embedded again on the next frame. If that one is like the doubtful
        embedding, someone else now stands where the tracked face was (a cut, a swap):
        the track restarts under a new id with no votes instead of lending the old
        name to the new face. If it is like the old face, the odd frame was a glitch
        (blur, occlusion) and is ignored.
        """
        if track.embedding is not None and float(track.embedding @ embedding) < SAME_FACE_MIN:
            if track.suspect is None or float(track.suspect @ embedding) < SAME_FACE_MIN:
                track.suspect = embedding
                track.embedded_at = frame_index
                return
            track.id, self._next_id = self._next_id, self._next_id + 1
            track.votes.clear()
            track.person_id = None
        track.suspect = None
        track.embedding = embedding
        track.embedded_at = frame_index
        track.embedded_height = track.det.raw_box[3]
        track.embedded_sharpness = patch_sharpness(rgb, track.det)
        # Each embedding votes for the person the decision rule names from it alone (None
        # for Unknown), at the same false-accept target as a photo; most votes wins and a
        # tie keeps the current identity, so names do not flicker. A name is therefore shown
        # only while most of the track's recent embeddings meet the target on their own.
        track.votes.append((decision.person_id, decision.similarity, decision.score))
        counts = Counter(p for p, _, _ in track.votes)
        winner = max(counts, key=lambda p: (counts[p], p == track.person_id))
        track.person_id = winner
        if winner is None:
            track.similarity, track.score = float(decision.similarity), float(decision.score)
        else:
            track.similarity = float(np.mean([s for p, s, _ in track.votes if p == winner]))
            track.score = float(np.mean([d for p, _, d in track.votes if p == winner]))


def _holds(region: Region, box: tuple[float, float, float, float], side: int) -> bool:
    """Whether *region* is at most *side* wide and holds the face at *box* whole.

    Whole even if the face moves by `REGION_SLACK` of its height before the next frame.
    """
    x0, y0, s = region
    bx, by, bw, bh = box
    # `FaceDetector.detect_regions` drops a face this close to a region's edge.
    m = 0.02 * s + REGION_SLACK * bh
    return (s <= side and x0 + m <= bx and bx + bw <= x0 + s - m
            and y0 + m <= by and by + bh <= y0 + s - m)


def patch_sharpness(rgb: np.ndarray, det: Detection, size: int = 48) -> float:
    """Variance of the Laplacian of the face box, shrunk to a fixed small patch.

    Shrunk as the lens's patch is (`_small_grey`), since it runs for every tracked face
    on every frame. Only its ratio between two frames of one face is used (`SHARPER`): on
    the bench videos and clips that ratio moves as a straight area average's does
    (largest over 2-8 frames 1.12-1.87 against 1.10-1.77).
    """
    x, y, w, h = det.box
    patch = rgb[y:y + h, x:x + w]
    if patch.size == 0:
        return 0.0
    return float(cv2.Laplacian(_small_grey(patch, size), cv2.CV_32F).var())
