"""The ``facerec`` command line, end to end, on a real SQLite file in a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import DEEPFACE, FR, REPO

# Identities in the shared photos (from the Yes pairs of master.csv).
JOLIE = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg", "img10.jpg",
         "img11.jpg"]


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def identify(capsys, data_dir: Path, *images: Path) -> list[dict]:
    code, out, err = run(capsys, data_dir, "identify", "--json", *images)
    assert code == 0, err
    return json.loads(out)


def names(result: list[dict]) -> list[list[str | None]]:
    return [[f["name"] for f in r["faces"]] for r in result]


def store_state(capsys, data_dir: Path) -> tuple[str, int]:
    """What the store holds (people and face counts) and its change counter."""
    from app.pipeline.store import FaceStore

    code, out, _ = run(capsys, data_dir, "people", "--json")
    assert code == 0
    with FaceStore(data_dir / "faces.db") as store:
        return out, store.generation


def test_enroll_identify_round_trip_across_restart(capsys, data_dir: Path) -> None:
    assert run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")[0] == 0
    assert run(capsys, data_dir, "enroll", "Angelina Jolie", DEEPFACE / JOLIE[0],
               DEEPFACE / JOLIE[1])[0] == 0
    # Each CLI call is a fresh process state: store and index are read back from disk.
    result = identify(capsys, data_dir, FR / "obama2.jpg", FR / "obama3.jpg",
                      *(DEEPFACE / f for f in JOLIE[2:]), FR / "biden.jpg", DEEPFACE / "img13.jpg")
    assert names(result) == [["Obama"], ["Obama"]] + [["Angelina Jolie"]] * 6 + [[None], [None]]
    face = result[0]["faces"][0]
    assert set(face) >= {"box", "name", "similarity"} and len(face["box"]) == 4
    assert face["similarity"] > 0.5
    assert result[0]["image"].endswith("obama2.jpg")

    code, out, _ = run(capsys, data_dir, "people", "--json")
    people = {p["name"]: p["faces"] for p in json.loads(out)}
    assert people == {"Angelina Jolie": 2, "Obama": 1}


def test_index_deleted_or_corrupted_is_rebuilt_with_same_answers(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")
    run(capsys, data_dir, "enroll", "Jolie", DEEPFACE / "img1.jpg")
    probes = [FR / "obama2.jpg", DEEPFACE / "img2.jpg", FR / "biden.jpg"]
    expected = identify(capsys, data_dir, *probes)
    index = data_dir / "faces.hnsw"
    assert index.exists()
    index.unlink()
    assert identify(capsys, data_dir, *probes) == expected
    assert index.exists()
    index.write_bytes(os.urandom(index.stat().st_size))
    assert identify(capsys, data_dir, *probes) == expected
    (data_dir / "faces.hnsw.json").write_text("{not json")
    assert identify(capsys, data_dir, *probes) == expected


def test_rename_and_remove_change_the_answers(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Barack", FR / "obama.jpg")
    assert names(identify(capsys, data_dir, FR / "obama2.jpg")) == [["Barack"]]
    assert run(capsys, data_dir, "rename", "barack", "Barack Obama")[0] == 0
    assert names(identify(capsys, data_dir, FR / "obama2.jpg")) == [["Barack Obama"]]
    code, _, err = run(capsys, data_dir, "rename", "Nobody", "X")
    assert code == 1 and "no person named" in err
    assert run(capsys, data_dir, "remove", "Barack Obama")[0] == 0
    assert names(identify(capsys, data_dir, FR / "obama2.jpg")) == [[None]]
    code, _, err = run(capsys, data_dir, "remove", "Barack Obama")
    assert code == 1 and "no person named" in err


def test_stranger_is_unknown(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg", FR / "obama2.jpg")
    run(capsys, data_dir, "enroll", "Biden", FR / "biden.jpg")
    strangers = [DEEPFACE / f for f in ("img3.jpg", "img8.jpg", "img13.jpg", "img16.jpg",
                                        "img18.jpg", "img20.jpg", "img22.jpg", "img24.jpg")]
    result = identify(capsys, data_dir, *strangers)
    assert names(result) == [[None]] * len(strangers)


def test_multi_face_photo_names_each_face(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Jolie", DEEPFACE / "img1.jpg", DEEPFACE / "img2.jpg")
    (result,) = identify(capsys, data_dir, DEEPFACE / "selfie-many-people.jpg")
    found = names([result])[0]
    assert len(found) >= 3 and found.count("Jolie") == 1
    assert set(found) == {"Jolie", None}


# -- bad input ------------------------------------------------------------------------

@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    files = {
        "missing": d / "missing.jpg",
        "directory": d,
        "non-image": d / "notes.jpg",
        "truncated": d / "cut.jpg",
        "zero-byte": d / "empty.jpg",
        "no-face": d / "blank.png",
    }
    files["non-image"].write_text("these are not pixels\n" * 20)
    files["truncated"].write_bytes((FR / "obama.jpg").read_bytes()[:15000])
    files["zero-byte"].write_bytes(b"")
    from PIL import Image
    Image.new("RGB", (320, 240), (90, 120, 150)).save(files["no-face"])
    return files


@pytest.mark.parametrize("kind", ["missing", "directory", "non-image", "truncated", "zero-byte",
                                  "no-face"])
def test_bad_enroll_input_is_named_and_stores_nothing(capsys, data_dir: Path,
                                                      bad_files: dict[str, Path], kind: str) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")
    before = store_state(capsys, data_dir)
    code, out, err = run(capsys, data_dir, "enroll", "Someone", bad_files[kind])
    assert code == 1
    assert bad_files[kind].name in err or str(bad_files[kind]) in err
    assert "Traceback" not in err
    assert store_state(capsys, data_dir) == before


def test_enroll_mixed_good_and_bad_stores_only_the_good(capsys, data_dir: Path,
                                                        bad_files: dict[str, Path]) -> None:
    code, out, err = run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg",
                         bad_files["no-face"], FR / "32bit.png")
    assert code == 1 and "blank.png: no face found" in err
    assert "enrolled 2 face(s)" in out


def test_identify_bad_input_reports_per_image(capsys, data_dir: Path,
                                              bad_files: dict[str, Path]) -> None:
    code, out, err = run(capsys, data_dir, "identify", "--json", FR / "obama.jpg",
                         bad_files["truncated"], bad_files["no-face"])
    assert code == 1
    result = json.loads(out)
    assert [len(r["faces"]) for r in result] == [1, 0, 0]
    assert "truncated" in result[1]["error"] and "error" not in result[2]


def test_import_folder(capsys, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "people"
    for person, photos in {"Obama": [FR / "obama.jpg", FR / "obama2.jpg"],
                           "Jolie": [DEEPFACE / "img1.jpg", DEEPFACE / "img4.jpg"],
                           "Empty": []}.items():
        (root / person).mkdir(parents=True)
        for p in photos:
            shutil.copy(p, root / person / p.name)
    (root / "Jolie" / "readme.txt").write_text("not a photo")
    (root / "Obama" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    code, out, err = run(capsys, data_dir, "import", root)
    assert code == 0, err
    assert "imported 4 face(s) for 2 people; skipped 2 file(s)" in out
    assert "broken.jpg" in err and "readme.txt" in err
    assert names(identify(capsys, data_dir, FR / "obama3.jpg", DEEPFACE / "img5.jpg")) == [
        ["Obama"], ["Jolie"]]


def test_import_empty_folder_fails_cleanly(capsys, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    code, _, err = run(capsys, data_dir, "import", tmp_path / "nothing")
    assert code == 1 and "no photos to import" in err
    code, _, err = run(capsys, data_dir, "import", tmp_path / "does-not-exist")
    assert code == 1 and "not a directory" in err


def test_watch_video_reports_every_frame(capsys, data_dir: Path, face_video: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")
    code, out, err = run(capsys, data_dir, "watch", face_video, "--json")
    assert code == 0
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["frame"] for f in frames] == list(range(72))
    first = [f["faces"][0]["name"] if f["faces"] else "-" for f in frames]
    assert first[:24].count("Obama") >= 22  # Obama's segment
    assert "Obama" not in first[24:]  # Biden (not enrolled) and a stranger
    assert "72 frame(s)" in err
    code, out, _ = run(capsys, data_dir, "watch", face_video, "--json", "--max-frames", "5")
    assert code == 0 and len(out.splitlines()) == 5


@pytest.mark.parametrize(("source", "message"), [
    ("7", "camera 7 not found"),
    ("/no/such/clip.mp4", "no such video file"),
])
def test_watch_bad_source(capsys, data_dir: Path, source: str, message: str) -> None:
    code, _, err = run(capsys, data_dir, "watch", source)
    assert code == 1 and message in err


def test_watch_undecodable_video(capsys, data_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    code, _, err = run(capsys, data_dir, "watch", fake)
    assert code == 1 and "fake.mp4" in err


def test_eval_reports_auc(capsys, data_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "roc.png"
    code, out, err = run(capsys, data_dir, "eval", DEEPFACE / "master.csv", "--images", DEEPFACE,
                         "--json", "--plot", plot)
    assert code == 0, err
    report = json.loads(out)
    assert report["auc"] >= 0.995
    assert report["pairs"] == 300 and report["no_face"] == []
    assert set(report) >= {"auc", "accuracy", "threshold", "tar_at_far_1pct", "no_face"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_bad_pairs_file(capsys, data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = run(capsys, data_dir, "eval", bad)
    assert code == 1 and "missing column" in err


def test_usage_errors_exit_2(capsys, data_dir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["enroll"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["watch", "x", "--max-frames", "0"])
    assert exc.value.code == 2


def test_subprocess_exit_codes_and_no_traceback(data_dir: Path, tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    env = {**os.environ, "FACEREC_HOME": str(data_dir)}
    exe = [sys.executable, "-m", "app"]
    ok = subprocess.run([*exe, "enroll", "Obama", str(FR / "obama.jpg")], env=env, cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # native libraries' start-up chatter is kept off the terminal
    bad = subprocess.run([*exe, "identify", str(tmp_path / "nope.jpg")], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "nope.jpg: no such file" in bad.stderr
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([*exe, "frobnicate"], env=env, cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
