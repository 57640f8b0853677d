"""Same-person checks at enrollment: the cut-off, measured; the flags, on real photos.

The cut-off test re-measures the gap between same-person and different-person pairs of
the shared photos with the current pipeline: run it after any change to the crop or the
model (``pytest tests/pipeline/test_consistency.py -k gap -s`` prints the figures).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from app.config import Paths, Settings
from app.pipeline.recognition.consistency import OTHER_PERSON, SAME_PERSON_MIN, UNLIKE
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.storage.store import NewFace
from tests.conftest import DEEPFACE, FR
from tests.identities import identity_groups

JOLIE = [DEEPFACE / f for f in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg")]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, NewFace]:
    """Every photo of a known identity, prepared for enrollment once."""
    paths = Paths(tmp_path_factory.mktemp("embed"))
    with Recognizer.open(paths, Settings()) as rec:
        photos = {p for ps in identity_groups().values() for p in ps} | {
            DEEPFACE / f for f in ("img3.jpg", "img13.jpg", "img16.jpg", "img20.jpg", "img22.jpg")}
        return {p: rec.prepare_file(p).face for p in photos}


@pytest.fixture
def rec(data_dir: Path) -> Recognizer:
    r = Recognizer.open(Paths(data_dir), Settings())
    yield r
    r.close()


def test_cutoff_sits_in_the_gap_between_same_and_different_people(embedded) -> None:  # noqa: ANN001
    groups = identity_groups()
    who = {p: g for g, ps in groups.items() for p in ps}
    same, different = [], []
    for a, b in itertools.combinations(sorted(who), 2):
        sim = float(embedded[a].embedding @ embedded[b].embedding)
        (same if who[a] == who[b] else different).append(sim)
    lowest_same, highest_different = min(same), max(different)
    print(f"\n{len(same)} same-person pairs >= {lowest_same:.3f}; {len(different)} different-"
          f"person pairs <= {highest_different:.3f}; middle {(lowest_same + highest_different) / 2:.3f}"
          f"; SAME_PERSON_MIN {SAME_PERSON_MIN}")
    assert (len(same), len(different)) == (44, 391)
    # In the gap, with room on both sides: re-measure and move it if this fails.
    assert highest_different + 0.02 <= SAME_PERSON_MIN <= lowest_same - 0.02


def test_a_face_unlike_the_persons_other_faces_is_flagged(rec: Recognizer, embedded) -> None:  # noqa: ANN001
    rec.enroll("Obama", [embedded[FR / "obama.jpg"], embedded[FR / "obama2.jpg"]])
    biden, obama3 = embedded[FR / "biden.jpg"], embedded[FR / "obama3.jpg"]
    flag, ok = rec.check_faces("obama", [biden.embedding, obama3.embedding])
    assert ok is None
    assert flag.kind == UNLIKE and flag.similarity < SAME_PERSON_MIN
    assert flag.reason.startswith("does not look like Obama's other 3 faces (similarity 0.")
    # Alone, a genuine photo passes; so does a second batch of them.
    assert rec.check_faces("Obama", [obama3.embedding]) == [None]
    assert rec.check_faces("Obama", [embedded[FR / "32bit.png"].embedding,
                                     obama3.embedding]) == [None, None]


def test_a_batch_of_several_peoples_photos_is_flagged(rec: Recognizer, embedded) -> None:  # noqa: ANN001
    # One wrong photo among a new person's photos: only it is flagged.
    batch = [embedded[p].embedding for p in JOLIE] + [embedded[FR / "obama.jpg"].embedding]
    flags = rec.check_faces("Angelina Jolie", batch)
    assert flags[:4] == [None] * 4 and flags[4].kind == UNLIKE
    # Two photos each of several people (each has a look-alike in the batch): all flagged.
    pairs = [g[:2] for g in identity_groups().values() if len(g) >= 2]
    mixed = [embedded[p].embedding for g in pairs for p in g]
    assert len(mixed) >= 16
    assert all(f is not None and f.kind == UNLIKE for f in rec.check_faces("Someone", mixed))
    # Two different people, alone together: neither vouches for the other.
    flags = rec.check_faces("Lin Manuel", [embedded[FR / "obama.jpg"].embedding,
                                           embedded[FR / "biden.jpg"].embedding])
    assert [f.reason.split(" (")[0] for f in flags] == ["does not look like the other photo"] * 2


def test_a_face_of_someone_already_enrolled_is_flagged(rec: Recognizer, embedded) -> None:  # noqa: ANN001
    biden = embedded[FR / "biden.jpg"]
    rec.enroll("Lin Manuel", [biden])  # the mistake the issue saw
    (flag,) = rec.check_faces("Joe Biden", [biden.embedding])
    assert flag.kind == OTHER_PERSON and flag.other == "Lin Manuel"
    assert flag.reason == "looks like Lin Manuel, who is already enrolled (similarity 1.00)"
    # Adding to an existing person: it matches someone else better than its own.
    rec.enroll("Obama", [embedded[FR / "obama.jpg"], embedded[FR / "obama2.jpg"]])
    (flag,) = rec.check_faces("Obama", [biden.embedding])
    assert flag.kind == OTHER_PERSON and flag.other == "Lin Manuel"
    assert flag.reason.startswith("looks more like Lin Manuel (similarity 1.00) than like Obama (0.")
    # Strangers do not raise it.
    assert rec.check_faces("Jennifer", [embedded[DEEPFACE / "img3.jpg"].embedding]) == [None]


def test_audit_finds_the_wrong_face_stored_earlier(rec: Recognizer, embedded) -> None:  # noqa: ANN001
    rec.enroll("Obama", [embedded[FR / "obama.jpg"], embedded[FR / "obama2.jpg"],
                         embedded[FR / "obama3.jpg"], embedded[FR / "biden.jpg"]])
    faces = {f.source: f.id for f in rec.faces_of("Obama")}
    flags = rec.audit("Obama")
    assert set(flags) == {faces["biden.jpg"]}
    assert flags[faces["biden.jpg"]].kind == UNLIKE
    # Moving it to Biden is checked against Biden (nobody yet: no flag); moving an
    # Obama photo to Biden afterwards is flagged as unlike Biden.
    assert rec.check_move([faces["biden.jpg"]], "Joe Biden") == [None]
    rec.move_faces([faces["biden.jpg"]], "Joe Biden")
    assert rec.audit("Obama") == {}
    (flag,) = rec.check_move([faces["obama3.jpg"]], "Joe Biden")
    assert flag is not None and flag.kind in (UNLIKE, OTHER_PERSON)


def test_checks_see_changes_made_by_another_process(data_dir: Path, embedded) -> None:  # noqa: ANN001
    with Recognizer.open(Paths(data_dir)) as window, Recognizer.open(Paths(data_dir)) as cli:
        cli.enroll("Joe Biden", [embedded[FR / "biden.jpg"]])
        (flag,) = window.check_faces("Lin Manuel", [embedded[FR / "biden.jpg"].embedding])
        assert flag is not None and flag.other == "Joe Biden"


def test_checks_refuse_an_invalid_name(rec: Recognizer, embedded) -> None:  # noqa: ANN001
    from app.pipeline.errors import PersonError

    with pytest.raises(PersonError):
        rec.check_faces("  ", [np.asarray(embedded[FR / "biden.jpg"].embedding)])
