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
    from app.pipeline.storage.store import FaceStore

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


# -- one policy: names, existing people, same-person checks, per-face commands -----------

@pytest.mark.parametrize("args", [
    ["enroll", "", str(FR / "obama.jpg")],
    ["enroll", "   ", str(FR / "obama.jpg")],
    ["enroll", "x" * 65, str(FR / "obama.jpg")],
    ["enroll", "tab\tand\x07bell", str(FR / "obama.jpg")],
    ["rename", "Obama", ""],
    ["rename", "", "Obama"],
    ["remove", ""],
    ["faces", " "],
    ["move-face", "1", "--to", ""],
])
def test_an_empty_or_invalid_name_is_a_usage_error(capsys, data_dir: Path, args: list[str]) -> None:
    code, _, err = run(capsys, data_dir, *args)
    assert code == 2 and err.startswith("facerec: error: a name ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_adding_to_an_existing_person_is_said(capsys, data_dir: Path) -> None:
    code, out, _ = run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")
    assert code == 0 and out.strip() == "enrolled 1 face(s) for Obama (a new person)"
    code, out, _ = run(capsys, data_dir, "enroll", "OBAMA", FR / "obama2.jpg")
    assert code == 0
    assert out.strip() == "added 1 face(s) to the existing person Obama (2 in total)"


def test_a_flagged_face_is_refused_unless_forced(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg", FR / "obama2.jpg")
    before = store_state(capsys, data_dir)
    code, out, err = run(capsys, data_dir, "enroll", "Obama", FR / "biden.jpg")
    assert code == 1 and out == ""
    refusal = err.splitlines()[0]
    assert refusal.startswith(f"facerec: error: {FR / 'biden.jpg'}: does not look like Obama's "
                              "other 2 faces (similarity 0.")
    assert refusal.endswith("not saved to Obama (check it, or pass --force)")
    assert store_state(capsys, data_dir) == before
    # Good photos in the same call are saved; the flagged one is not; exit 1 says so.
    code, out, err = run(capsys, data_dir, "enroll", "Obama", FR / "obama3.jpg", FR / "biden.jpg")
    assert code == 1 and "added 1 face(s) to the existing person Obama (3 in total)" in out
    assert "biden.jpg: does not look like" in err
    # Someone already enrolled, under a new name.
    run(capsys, data_dir, "enroll", "Joe Biden", FR / "biden.jpg")
    code, _, err = run(capsys, data_dir, "enroll", "Lin Manuel", FR / "biden.jpg")
    assert code == 1 and "biden.jpg: looks like Joe Biden, who is already enrolled (similarity 1.00)" in err
    # "I know": --force stores it, with a warning.
    code, out, err = run(capsys, data_dir, "enroll", "Lin Manuel", FR / "biden.jpg", "--force")
    assert code == 0 and "enrolled 1 face(s) for Lin Manuel (a new person)" in out
    assert err.startswith("warning: ") and "saved to Lin Manuel anyway (--force)" in err


def test_faces_list_remove_and_move_by_id(capsys, data_dir: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg", FR / "obama2.jpg", FR / "obama3.jpg")
    run(capsys, data_dir, "enroll", "Obama", FR / "biden.jpg", "--force")  # a mistake
    code, out, _ = run(capsys, data_dir, "faces", "obama", "--json")
    assert code == 0
    faces = json.loads(out)
    assert [f["source"] for f in faces] == ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    assert [f["flag"] is not None for f in faces] == [False, False, False, True]
    ids = {f["source"]: f["id"] for f in faces}
    code, out, _ = run(capsys, data_dir, "faces", "Obama")
    lines = out.splitlines()
    assert len(lines) == 4 and lines[3].split()[:2] == [str(ids["biden.jpg"]), "biden.jpg"]
    assert "flagged: does not look like Obama's other 3 faces" in lines[3]
    # Moving an Obama photo to a new Biden is refused (it looks like Obama)...
    code, _, err = run(capsys, data_dir, "move-face", ids["obama3.jpg"], "--to", "Joe Biden")
    assert code == 1 and f"face {ids['obama3.jpg']}: looks like Obama, who is already enrolled" in err
    # ... the wrong face moves to its own person.
    code, out, _ = run(capsys, data_dir, "move-face", ids["biden.jpg"], "--to", "Joe Biden")
    assert code == 0 and out.strip() == (f"moved face {ids['biden.jpg']} to a new person "
                                         "Joe Biden (1 in total)")
    assert names(identify(capsys, data_dir, FR / "biden.jpg")) == [["Joe Biden"]]
    code, out, _ = run(capsys, data_dir, "remove-face", ids["obama3.jpg"])
    assert code == 0 and out.strip() == f"removed face {ids['obama3.jpg']} from Obama (2 left)"
    code, _, err = run(capsys, data_dir, "remove-face", 9999)
    assert code == 1 and "no face with id 9999" in err
    code, _, err = run(capsys, data_dir, "faces", "Nobody")
    assert code == 1 and "no person named 'Nobody'" in err
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", str(data_dir), "remove-face", "seven"])
    assert exc.value.code == 2


def test_import_refuses_flagged_faces(capsys, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "people"
    for person, photos in {"Obama": [FR / "obama.jpg", FR / "obama2.jpg", FR / "biden.jpg"],
                           "Jolie": [DEEPFACE / "img1.jpg", DEEPFACE / "img4.jpg"]}.items():
        (root / person).mkdir(parents=True)
        for p in photos:
            shutil.copy(p, root / person / p.name)
    code, out, err = run(capsys, data_dir, "import", root)
    assert code == 1
    assert ("imported 4 face(s) for 2 people; skipped 0 file(s); refused 1 face(s) that failed "
            "the same-person checks") in out
    assert "biden.jpg: does not look like Obama's other 2 faces" in err
    code, out, _ = run(capsys, data_dir, "people", "--json")
    assert {p["name"]: p["faces"] for p in json.loads(out)} == {"Jolie": 2, "Obama": 2}


def test_watch_log_writes_the_recognition_log(capsys, data_dir: Path, face_video: Path) -> None:
    run(capsys, data_dir, "enroll", "Obama", FR / "obama.jpg")
    code, _, err = run(capsys, data_dir, "watch", face_video)
    assert code == 0
    code, out, _ = run(capsys, data_dir, "log", "--json")
    assert code == 0 and json.loads(out) == []  # watch logs only when asked
    code, _, err = run(capsys, data_dir, "watch", face_video, "--log")
    assert code == 0 and "recognition log: 3 appearance(s) written" in err
    code, out, _ = run(capsys, data_dir, "log", "--json")
    rows = json.loads(out)
    # Obama once, then Biden and the stranger, each a stranger with a track of their own.
    assert [r["name"] for r in rows] == [None, None, "Obama"]
    assert len({r["track"] for r in rows}) == 3 and rows[2]["similarity"] > 0.5
    assert all(r["source"] == face_video.name for r in rows)
    # Timed by the video's clock: Obama's 24 frames at 12 fps.
    obama = rows[2]
    from datetime import datetime
    span = (datetime.fromisoformat(obama["last_seen"]) - datetime.fromisoformat(obama["started"]))
    assert 1.5 <= span.total_seconds() <= 2.0
    code, out, _ = run(capsys, data_dir, "log")
    assert code == 0 and len(out.splitlines()) == 3 and "Obama" in out.splitlines()[2]
