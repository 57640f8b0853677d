"""Faces enrolled by an older version of facerec: never matched, always reported.

An older version's embedding of a photo is not comparable with today's (another crop,
no mean subtracted), so such faces take no part in recognition or in the same-person
checks, and the CLI says how many there are and that those people should be enrolled
again from photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.config import Paths, Settings
from app.pipeline.recognition.align import EMBEDDING_VERSION
from app.pipeline.recognition.consistency import OUTDATED
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.storage.store import FaceStore, NewFace
from tests.conftest import FR

#: The versions facerec wrote before this one ('' is a face from before the store kept it).
OLD_VERSIONS = ("", "facenet-20180408-int8/crop-1", "facenet512-20180408/mtcnn-box-v2")


def run(capsys, data_dir: Path, *args: object) -> tuple[int, str, str]:  # noqa: ANN001
    code = main(["--data-dir", str(data_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def obama(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NewFace]:
    with Recognizer.open(Paths(tmp_path_factory.mktemp("embed")), Settings()) as rec:
        return {p.name: rec.prepare_file(p).face for p in (FR / "obama.jpg", FR / "obama2.jpg",
                                                            FR / "biden.jpg")}


def as_version(face: NewFace, version: str) -> NewFace:
    """The same face, labelled as made by *version* (its vector is today's, the worst case)."""
    return NewFace(face.embedding, face.thumbnail, face.source, version)


def test_faces_of_an_older_version_are_never_matched(data_dir: Path, obama) -> None:  # noqa: ANN001
    with FaceStore(data_dir / "faces.db") as store:
        # Even a vector identical to today's embedding of the probe: it is not compared.
        store.add_faces("Old Obama", [as_version(obama["obama.jpg"], v) for v in OLD_VERSIONS])
        store.add_faces("Obama", [obama["obama2.jpg"]])
    with Recognizer.open(Paths(data_dir), Settings()) as rec:
        assert rec.index.people_count == 1 and len(rec.index) == 1
        (match,) = rec.index.match(obama["obama.jpg"].embedding[None])
        assert match.name == "Obama" and match.runner_up == -1.0
        old = rec.outdated()
        assert (old.faces, old.people, old.unrecognised) == (3, 1, 1)
        old_id = rec.store.person("Old Obama").id
        assert old.of(old_id) == 3 and old.of(rec.store.person("Obama").id) == 0
        assert old.note() == ("3 faces of 1 person were enrolled by an older version of facerec "
                              "and are not used for recognition; they cannot be recognised at "
                              "all: enroll them again from photos")
        # Another process adds an old face, and a current one: only the current one is used.
        with FaceStore(data_dir / "faces.db") as other:
            other.add_faces("Obama", [as_version(obama["biden.jpg"], OLD_VERSIONS[1])])
            other.add_faces("Old Obama", [obama["obama.jpg"]])
        assert rec.refresh()
        assert rec.index.people_count == 2 and len(rec.index) == 2
        assert rec.identify(obama["obama.jpg"].embedding[None])[0].person_id == old_id
        old = rec.outdated()
        assert (old.faces, old.people, old.unrecognised) == (4, 2, 0)
        assert old.note().endswith("are not used for recognition: enroll them again from photos")
        # A new reload (as after an upgrade) makes the same choice.
        rec.reload()
        assert len(rec.index) == 2


def test_older_faces_are_flagged_and_left_out_of_the_checks(data_dir: Path, obama) -> None:  # noqa: ANN001
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Obama", [obama["obama.jpg"], as_version(obama["biden.jpg"], "")])
    with Recognizer.open(Paths(data_dir), Settings()) as rec:
        faces = {f.source: f for f in rec.faces_of("Obama")}
        assert faces["obama.jpg"].embedder == EMBEDDING_VERSION and faces["biden.jpg"].embedder == ""
        flags = rec.audit("Obama")
        # The old face is flagged as such, not as "unlike" (it is not compared at all).
        assert set(flags) == {faces["biden.jpg"].id}
        assert flags[faces["biden.jpg"].id].kind == OUTDATED
        assert "older version of facerec" in flags[faces["biden.jpg"].id].reason
        # Biden's photo of today does not look like Obama: the old face cannot vouch for it.
        (flag,) = rec.check_faces("Obama", [obama["biden.jpg"].embedding])
        assert flag is not None and flag.similarity < 0.39
        # Moving the old face is not checked (no comparable vector); moving both is fine.
        assert rec.check_move([faces["biden.jpg"].id], "Joe Biden") == [None]
        assert rec.check_move([faces["obama.jpg"].id, faces["biden.jpg"].id], "Someone") == [None, None]


def test_the_cli_says_who_must_be_enrolled_again(capsys, data_dir: Path, obama) -> None:  # noqa: ANN001
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Old Obama", [as_version(obama["obama.jpg"], OLD_VERSIONS[1]),
                                      as_version(obama["obama2.jpg"], OLD_VERSIONS[2])])
        store.add_faces("Mixed", [obama["biden.jpg"], as_version(obama["biden.jpg"], "")])
    code, out, err = run(capsys, data_dir, "people")
    assert code == 0
    assert out.splitlines() == [
        "Mixed      2 face(s), 1 by an older version: not used, enroll again from photos",
        "Old Obama  2 face(s), all by an older version: not recognised, enroll again from photos"]
    assert err.strip() == ("note: 3 faces of 2 people were enrolled by an older version of facerec "
                           "and are not used for recognition; 1 of them cannot be recognised at all: "
                           "enroll them again from photos")
    code, out, _ = run(capsys, data_dir, "people", "--json")
    assert [(p["name"], p["faces"], p["older_version_faces"]) for p in json.loads(out)] == [
        ("Mixed", 2, 1), ("Old Obama", 2, 2)]
    # identify and enroll work as before and say it on stderr, once.
    code, out, err = run(capsys, data_dir, "identify", FR / "obama.jpg")
    assert code == 0 and "Unknown" in out and "Old Obama" not in out
    assert err.count("enroll them again from photos (facerec people lists them)") == 1
    code, out, err = run(capsys, data_dir, "enroll", "Old Obama", FR / "obama.jpg", FR / "obama2.jpg")
    assert code == 0, err
    assert out.strip() == "added 2 face(s) to the existing person Old Obama (4 in total)"
    assert "3 faces of 2 people were enrolled by an older version" in err
    code, out, err = run(capsys, data_dir, "identify", FR / "obama3.jpg")
    assert "Old Obama (similarity" in out and "3 faces of 2 people" in err
    assert "cannot be recognised" not in err  # Old Obama has faces of today now
    # faces shows which ones, and --json says which are current.
    code, out, _ = run(capsys, data_dir, "faces", "Old Obama")
    assert sum("flagged: was enrolled by an older version of facerec" in line
               for line in out.splitlines()) == 2
    code, out, _ = run(capsys, data_dir, "faces", "Old Obama", "--json")
    assert [f["current"] for f in json.loads(out)] == [False, False, True, True]
    # Once the old faces are removed, nothing more is said.
    old_ids = [str(f["id"]) for f in json.loads(out) if not f["current"]]
    with FaceStore(data_dir / "faces.db") as store:
        mixed_old = [str(f.id) for f in store.faces_of(store.person("Mixed").id) if f.embedder == ""]
    assert run(capsys, data_dir, "remove-face", *old_ids, *mixed_old)[0] == 0
    code, out, err = run(capsys, data_dir, "people")
    assert err == "" and "older version" not in out


def test_the_mean_embedding_is_verified_and_shapes_every_embedding(tmp_path: Path) -> None:
    import shutil

    from app.pipeline.errors import ModelError
    from app.pipeline.models import EMBEDDER, EMBEDDING_MEAN, models_dir
    from app.pipeline.recognition.embedder import FaceEmbedder, load_mean

    mean = load_mean()
    assert mean.shape == (512,) and 0.1 < float(np.linalg.norm(mean)) < 0.3
    assert EMBEDDING_MEAN.sha256[:12] in EMBEDDING_VERSION
    crop = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    raw = FaceEmbedder(centred=False).embed(crop)[0]
    centred = FaceEmbedder().embed(crop)[0]
    expected = (raw - mean) / np.linalg.norm(raw - mean)
    assert np.allclose(centred, expected, atol=1e-6)
    # A missing or altered mean is refused like a model.
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(models_dir() / EMBEDDER.filename, d / EMBEDDER.filename)
    with pytest.raises(ModelError, match="missing.*embedding-mean"):
        FaceEmbedder(model_dir=d)
    data = bytearray((models_dir() / EMBEDDING_MEAN.filename).read_bytes())
    data[-1] ^= 0x01
    (d / EMBEDDING_MEAN.filename).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged or altered"):
        FaceEmbedder(model_dir=d)
    FaceEmbedder(model_dir=d, centred=False)  # the network alone does not need it
