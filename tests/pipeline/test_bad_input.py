"""Every kind of bad input gets a clear message and a non-zero exit; the store is unchanged."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import FR
from tests.corpus import ACCEPT, CORPUS, build

assert len(CORPUS) >= 20


def run(capsys, data_dir: Path, *args: object) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(db: Path) -> tuple:
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT value FROM meta WHERE key='generation'").fetchone(),
                con.execute("SELECT id, name FROM people ORDER BY id").fetchall(),
                con.execute("SELECT id, person_id, length(embedding) FROM faces").fetchall())
    finally:
        con.close()


@pytest.fixture
def gallery(capsys, data_dir: Path) -> Path:
    assert run(capsys, data_dir, "enroll", "Biden", FR / "biden.jpg")[0] == 0
    return data_dir


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_corpus_through_enroll_and_identify(capsys, gallery: Path, tmp_path: Path,
                                            kind: str) -> None:
    path = build(kind, tmp_path)
    before = snapshot(gallery / "faces.db")
    code, out, err = run(capsys, gallery, "enroll", "Obama", path)
    assert "Traceback" not in err
    if CORPUS[kind][2] == ACCEPT:
        assert code == 0, err
        # Decoded the right way up and in the right colours: the face is found and named.
        code, out, err = run(capsys, gallery, "identify", "--json", path)
        assert code == 0, err
        faces = json.loads(out)[0]["faces"]
        assert [f["name"] for f in faces] == ["Obama"]
    else:
        assert code == 1
        assert path.name.encode("utf-8", "backslashreplace").decode() in err or path.name in err
        assert snapshot(gallery / "faces.db") == before
        code, out, err = run(capsys, gallery, "identify", "--json", path)
        assert code in (0, 1) and "Traceback" not in err  # no face is not an identify error


def test_unreadable_file(capsys, gallery: Path, tmp_path: Path, monkeypatch) -> None:
    path = build("greyscale-jpeg", tmp_path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: fail the read as it fails for a user
        real = Path.read_bytes

        def deny(self: Path) -> bytes:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)
        monkeypatch.setattr(Path, "read_bytes", deny)
    before = snapshot(gallery / "faces.db")
    code, _, err = run(capsys, gallery, "enroll", "Obama", path)
    assert code == 1 and "permission denied" in err
    assert snapshot(gallery / "faces.db") == before


def test_folder_of_thousands_of_files(capsys, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "many"
    (root / "Obama").mkdir(parents=True)
    (root / "Obama" / "obama.jpg").write_bytes((FR / "obama.jpg").read_bytes())
    junk = root / "Clutter"
    junk.mkdir()
    for i in range(3000):
        (junk / f"file{i:04d}.txt").write_bytes(b"x")
    for i in range(200):
        (junk / f"broken{i:03d}.jpg").write_bytes(b"\xff\xd8\xff" + bytes([i]))
    code, out, err = run(capsys, data_dir, "import", root)
    assert code == 0 and "imported 1 face(s) for 1 people; skipped 3200 file(s)" in out


def test_video_that_ends_early(capsys, data_dir: Path, face_video: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(face_video.read_bytes()[: face_video.stat().st_size // 3])
    code, out, err = run(capsys, data_dir, "watch", cut, "--json")
    assert code == 0 and "Traceback" not in err
    assert 5 < len(out.splitlines()) < 72  # what is there is processed, then it ends


def test_stream_that_ends_mid_way(capsys, data_dir: Path, face_video: Path, tmp_path: Path) -> None:
    """An HTTP stream that stops delivering is reported as lost: exit 1, one line."""
    (tmp_path / "live.avi").write_bytes(face_video.read_bytes()[: face_video.stat().st_size // 2])
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.avi"
        code, out, err = run(capsys, data_dir, "watch", url, "--json")
    finally:
        server.shutdown()
    assert "Traceback" not in err
    assert code == 1 and "lost" in err
    assert len(out.splitlines()) > 0  # frames before the cut were processed


def test_missing_camera(capsys, data_dir: Path) -> None:
    code, _, err = run(capsys, data_dir, "watch", "9")
    assert code == 1 and "camera 9 not found" in err


def test_probing_for_cameras_prints_nothing(tmp_path: Path) -> None:
    """Without a camera, OpenCV would print an "[ERROR] ... Camera index out of range" line
    per index tried; probing says nothing, and a missing camera is one line of ours."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = subprocess.run(
        [sys.executable, "-c", "from app.pipeline.sources import list_cameras; "
                               "print(list_cameras(max_index=6))"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stderr == ""
    if probe.stdout.strip() != "[]":
        pytest.skip("this machine has a camera")
    missing = subprocess.run([sys.executable, "-m", "app", "--data-dir", str(tmp_path), "watch", "5"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert missing.stderr == "facerec: error: camera 5 not found or busy\n"
