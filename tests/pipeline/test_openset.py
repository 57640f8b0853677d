"""Open-set evaluation, calibration and the LFW split, on the shared photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.config import DEFAULT_FALSE_ACCEPT, Paths, Settings
from app.pipeline.recognition.decision import Calibration, load_calibration
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.tools.lfw import SplitPlan, lfw_people, plan_split
from app.pipeline.tools.openset import RUNNER_UP_WEIGHTS, embed_probes, score_galleries
from tests.people import link, shared_people
from tests.pipeline.test_cli import run

#: People with 3+ photos are enrolled with 2 and probed with up to 2 more; the rest are strangers.
GALLERY_PHOTOS, KNOWN_PHOTOS = 2, 2


@pytest.fixture(scope="module")
def openset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gallery/, known/ and strangers/ folders (one subfolder per person) of shared photos."""
    root = tmp_path_factory.mktemp("openset")
    for name, photos in shared_people().items():
        if len(photos) > GALLERY_PHOTOS:
            roles = [("gallery", photos[:GALLERY_PHOTOS]),
                     ("known", photos[GALLERY_PHOTOS:GALLERY_PHOTOS + KNOWN_PHOTOS])]
        else:
            roles = [("strangers", photos)]
        for role, files in roles:
            for f in files:
                link(f, root / role / name / f.name, max_side=400)
    return root


def _args(root: Path) -> list[object]:
    return [root / "gallery", "--known", root / "known", "--strangers", root / "strangers"]


def test_eval_openset_reports_each_gallery_size(capsys, data_dir: Path, openset: Path) -> None:
    code, out, err = run(capsys, data_dir, "eval-openset", *_args(openset), "--sizes", "1,4,11",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["gallery_people"], report["known_probes"], report["stranger_probes"]) == (11, 20, 7)
    assert "about 1 stranger in 200" in report["rule"]
    sizes = {r["size"]: r for r in report["sizes"]}
    assert list(sizes) == [1, 4, 11]
    # Enough galleries that every person with probes is in about one of each size.
    assert [sizes[n]["galleries"] for n in (1, 4, 11)] == [11, 3, 1]
    assert sizes[1]["known_probes"] == 20 and sizes[11]["known_probes"] == 20
    assert sizes[1]["stranger_probes"] == 11 * 7
    for r in sizes.values():
        assert r["rank1"] == 1.0 and r["wrong_name"] == 0.0 and r["stranger_false_accept"] == 0.0
        assert r["named_right"] >= 0.9
        assert set(r["dir_at_far"]) == {"0.001", "0.01", "0.1"}
    # Each size is decided at the shipped calibration's bar for that many people.
    cal = load_calibration()
    for n, r in sizes.items():
        assert r["threshold"] == pytest.approx(cal.threshold(n, DEFAULT_FALSE_ACCEPT), abs=1e-5)
    # It enrolled into a temporary store, never into the user's.
    assert not (data_dir / "faces.db").exists()

    code, out, _ = run(capsys, data_dir, "eval-openset", *_args(openset), "--sizes", "11,50")
    assert code == 0 and "strangers named" in out and "DIR@1%" in out
    rows = [line.split()[0] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rows == ["11"]  # a size beyond the gallery is the whole gallery, once


def test_eval_openset_gives_the_apps_own_answers(capsys, data_dir: Path, tmp_path: Path,
                                                 openset: Path) -> None:
    """Each probe's decision in the evaluation is what `facerec identify` says after an import."""
    rec = Recognizer.open(Paths(tmp_path / "eval"), Settings())
    try:
        probes = embed_probes(rec, *(openset / d for d in ("gallery", "known", "strangers")))
        (scores,) = score_galleries(rec, probes, [len(probes.gallery)], 0, tmp_path, decide=True)
    finally:
        rec.close()
    assert run(capsys, data_dir, "import", openset / "gallery")[0] == 0
    files = sorted((openset / "known").glob("*/*")) + sorted((openset / "strangers").glob("*/*"))
    code, out, err = run(capsys, data_dir, "identify", "--json", *files)
    assert code == 0, err
    app = [r["faces"][0] for r in json.loads(out)]
    decisions = scores.known + scores.strangers
    assert len(app) == len(decisions) == 27
    for f, face, decision, correct in zip(files, app, decisions,
                                          scores.known_correct + [False] * len(scores.strangers)):
        assert face["similarity"] == round(decision.similarity, 4), f
        assert face["decision_score"] == round(decision.score, 4), f
        named = decision.person_id is not None
        assert (face["name"] is not None) == named, f
        if named and correct:
            assert face["name"] == f.parent.name
    assert sum(face["name"] is not None for face in app) >= 20


def test_calibrate_writes_a_calibration_facerec_can_use(capsys, data_dir: Path, tmp_path: Path,
                                                        openset: Path) -> None:
    out_file = tmp_path / "calibration.json"
    code, out, err = run(capsys, data_dir, "calibrate", *_args(openset), "--out", out_file)
    assert code == 0, err
    cal = Calibration.load(out_file)
    assert cal.people == (1, 2, 3, 5, 10, 11)
    assert cal.runner_up_weight in RUNNER_UP_WEIGHTS
    assert cal.source["strangers"] == 7 and cal.source["gallery_people"] == 11
    assert "facerec" in cal.source["command"] and "calibrate" in cal.source["command"]
    assert "runner-up weight" in out and "calibration written to" in out
    # facerec runs on it.
    rec = Recognizer.open(Paths(tmp_path / "uses"), Settings(), calibration=cal)
    rec.close()


def _small_lfw(root: Path) -> dict[str, int]:
    """An LFW-like tree: 11 people with 3+ photos, one with 2, three with 1."""
    counts = {}
    for name, photos in shared_people().items():
        keep = photos if len(photos) != 2 or name == "Person_K" else photos[:1]
        for i, f in enumerate(keep, start=1):
            link(f, root / name / f"{name}_{i:04d}.jpg")
        counts[name] = len(keep)
    return counts


def _pairs_file(lfw: Path, counts: dict[str, int]) -> set[str]:
    """A View 2-like pairs.txt over the first two people's photos; the photos it names."""
    a, b = sorted(counts)[:2]
    same = [(n, i, i + 1) for n in (a, b) for i in range(1, counts[n], 2)]
    diff = [(a, 1, b, 1)] * len(same)
    (lfw / "lfw_dir_names").mkdir(parents=True)
    lines = [f"1 {len(same)}", *(" ".join(map(str, x)) for x in same + diff)]
    (lfw / "lfw_dir_names" / "pairs.txt").write_text("\n".join(lines) + "\n")
    return {f"{n}/{n}_{i:04d}.jpg" for n, x, y in same for i in (x, y)} | {f"{b}/{b}_0001.jpg"}


def test_lfw_split_is_seeded_and_disjoint(capsys, data_dir: Path, tmp_path: Path) -> None:
    counts = _small_lfw(tmp_path / "lfw" / "images_deepfunneled")
    in_pairs = _pairs_file(tmp_path / "lfw", counts)
    split = ["--enrolled", "8", "--fillers", "0", "--strangers", "2"]
    code, out, err = run(capsys, data_dir, "lfw-split", tmp_path / "lfw", tmp_path / "a", *split)
    assert code == 0, err
    manifest = json.loads((tmp_path / "a" / "split.json").read_text())
    # The photos for the mean embedding: every photo of the calibration people that is in no
    # pair of pairs.txt (so neither benchmark sees its own photos in the mean).
    assert manifest["mean_excludes_view2"] is True
    calibration_people = {n for r in ("gallery", "known", "strangers") for n in manifest["calibration"][r]}
    expected = {n: [f"{n}_{i:04d}.jpg" for i in range(1, counts[n] + 1)
                    if f"{n}/{n}_{i:04d}.jpg" not in in_pairs] for n in sorted(calibration_people)}
    assert manifest["calibration"]["mean"] == {n: f for n, f in expected.items() if f}
    assert sorted(p.name for p in (tmp_path / "a" / "calibration" / "mean").iterdir()) == sorted(
        n for n, f in expected.items() if f)
    assert manifest["counts"]["report"]["gallery"] == {"people": 8, "photos": 16}
    assert manifest["counts"]["report"]["strangers"] == {"people": 2, "photos": 2}
    assert manifest["counts"]["calibration"]["gallery"] == {"people": 4, "photos": 8}
    roles = [(s, r) for s in ("report", "calibration") for r in ("gallery", "strangers")]
    people = [set(manifest[s][r]) for s, r in roles]
    assert sum(map(len, people)) == len(set().union(*people)) == len(counts)  # each once
    for s in ("report", "calibration"):
        for person, files in manifest[s]["known"].items():
            assert set(files).isdisjoint(manifest[s]["gallery"][person])
            assert len(files) == min(3, counts[person] - 2)
            for f in files:
                link_ = tmp_path / "a" / s / "known" / person / f
                assert link_.resolve() == (tmp_path / "lfw" / "images_deepfunneled" / person / f).resolve()
    # The same seed gives the same split; another seed another one.
    assert run(capsys, data_dir, "lfw-split", tmp_path / "lfw", tmp_path / "b", *split)[0] == 0
    assert (tmp_path / "b" / "split.json").read_text() == (tmp_path / "a" / "split.json").read_text()
    people = lfw_people(tmp_path / "lfw" / "images_deepfunneled")
    assert {n: len(f) for n, f in people.items()} == counts
    other = plan_split(people, 1, SplitPlan(enrolled=8, fillers=0, strangers=2))
    assert other["report"]["gallery"] != manifest["report"]["gallery"]
    # The default plan needs LFW's 5749 people; a small folder is refused, saying why.
    code, _, err = run(capsys, data_dir, "lfw-split", tmp_path / "lfw", tmp_path / "c")
    assert code == 1 and "too few people with more than 2 photos: 11" in err
    code, _, err = run(capsys, data_dir, "lfw-split", tmp_path / "lfw", tmp_path / "a", *split)
    assert code == 1 and "exists and is not empty" in err



def test_embedding_mean_is_the_person_balanced_mean_of_the_network(capsys, data_dir: Path,
                                                                    tmp_path: Path) -> None:
    from app.pipeline.imageio import load_image
    from app.pipeline.models import sha256_of
    from app.pipeline.recognition.detector import FaceDetector
    from app.pipeline.recognition.embedder import FaceEmbedder, load_mean
    from app.pipeline.recognition.recognizer import subject_face_embedding

    people = {n: ps for n, ps in sorted(shared_people().items())[:3]}
    for name, photos in people.items():
        for f in photos:
            link(f, tmp_path / "mean" / name / f.name)
    code, out, err = run(capsys, data_dir, "embedding-mean", tmp_path / "mean", "--out", tmp_path / "m.npy")
    assert code == 0, err
    mean = np.load(tmp_path / "m.npy", allow_pickle=False)
    det, net = FaceDetector(), FaceEmbedder(centred=False)
    try:
        per_person = [np.mean([subject_face_embedding(det, net, load_image(f)) for f in photos], axis=0)
                      for photos in people.values()]
    finally:
        det.close()
    assert mean.shape == (512,) and mean.dtype == np.float32
    assert np.allclose(mean, np.mean(per_person, axis=0), atol=1e-6)
    n = sum(map(len, people.values()))
    assert out.splitlines()[0].startswith(f"mean of 3 people ({n} photos), length 0.")
    assert f"sha256 {sha256_of(tmp_path / 'm.npy')}" in out
    assert "pin the new one there" in out  # it is not the shipped mean
    assert not np.allclose(mean, load_mean())
    # A folder without faces is refused with a reason.
    (tmp_path / "empty" / "Nobody").mkdir(parents=True)
    code, _, err = run(capsys, data_dir, "embedding-mean", tmp_path / "empty", "--out", tmp_path / "x.npy")
    assert code == 1 and "no face found in any photo" in err
