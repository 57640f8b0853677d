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


# -- issue 13: damaged, foreign and read-only stores ----------------------------------


def _face_ids(db: Path, name: str) -> list[int]:
    con = sqlite3.connect(db)
    try:
        return [i for (i,) in con.execute("SELECT f.id FROM faces f JOIN people p ON p.id = f.person_id "
                                          "WHERE p.name = ? ORDER BY f.id", (name,))]
    finally:
        con.close()


def test_a_flipped_bit_in_a_stored_embedding_names_nobody(capsys, data_dir: Path) -> None:
    """Issue 13 item 1: bit 6 of byte 43 of Biden's embedding made him match every photo."""
    assert run(capsys, data_dir, "enroll", "Barack Obama", FR / "obama.jpg", FR / "obama2.jpg")[0] == 0
    assert run(capsys, data_dir, "enroll", "Joe Biden", FR / "biden.jpg")[0] == 0
    db = data_dir / "faces.db"
    (biden,) = _face_ids(db, "Joe Biden")
    obama_first = _face_ids(db, "Barack Obama")[0]
    con = sqlite3.connect(db)
    for face in (biden, obama_first):
        blob = bytearray(con.execute("SELECT embedding FROM faces WHERE id = ?", (face,)).fetchone()[0])
        blob[43] ^= 1 << 6
        con.execute("UPDATE faces SET embedding = ? WHERE id = ?", (bytes(blob), face))
    con.commit()
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite sees nothing
    con.close()

    code, out, err = run(capsys, data_dir, "identify", "--json", FR / "obama3.jpg", FR / "biden.jpg",
                         FR / "obama.jpg")
    assert code == 0, err
    found = [[(f["name"], f["similarity"]) for f in r["faces"]] for r in json.loads(out)]
    assert [[n for n, _ in r] for r in found] == [["Barack Obama"], [None], ["Barack Obama"]]
    assert all(-1 <= s <= 1 for r in found for _, s in r)
    assert "damaged face(s) of 'Joe Biden'" in err and "Traceback" not in err

    code, out, err = run(capsys, data_dir, "people")
    assert code == 0 and "2 stored face(s) are damaged" in err
    assert "'Barack Obama' (1)" in err and "'Joe Biden' (1)" in err


@pytest.mark.parametrize("damage", ["one-byte embedding", "missing meta row", "garbled meta row"])
def test_a_damaged_store_gives_one_clear_line(capsys, gallery: Path, damage: str) -> None:
    db = gallery / "faces.db"
    con = sqlite3.connect(db)
    if damage == "one-byte embedding":
        con.execute("UPDATE faces SET embedding = x'01'")
    elif damage == "missing meta row":
        con.execute("DELETE FROM meta WHERE key = 'generation'")
    else:
        con.execute("UPDATE meta SET value = 'x7' WHERE key = 'generation'")
    con.commit()
    con.close()
    before = db.read_bytes()
    for args in (["people"], ["identify", FR / "biden.jpg"], ["enroll", "Obama", FR / "obama.jpg"]):
        code, out, err = run(capsys, gallery, *args)
        assert "unexpected" not in err and "Traceback" not in err, err
        if damage != "one-byte embedding":
            assert code == 1 and "is damaged: its 'generation' record is" in err
            assert len(err.strip().splitlines()) == 1
    if damage == "one-byte embedding":
        assert "1 stored face(s) are damaged" in run(capsys, gallery, "people")[2]
    else:
        assert db.read_bytes() == before


def test_a_zero_byte_store_is_not_taken_for_a_new_one(capsys, data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "faces.db").touch()
    for args in (["people"], ["enroll", "Biden", FR / "biden.jpg"]):
        code, _, err = run(capsys, data_dir, *args)
        assert code == 1 and "is empty (0 bytes)" in err and "restore" in err
    assert (data_dir / "faces.db").stat().st_size == 0  # left as it was, for the user to look at


def test_another_apps_sqlite_file_is_refused(capsys, data_dir: Path) -> None:
    data_dir.mkdir()
    con = sqlite3.connect(data_dir / "faces.db")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.execute("INSERT INTO notes(text) VALUES ('mine')")
    con.commit()
    con.close()
    for args in (["people"], ["enroll", "Biden", FR / "biden.jpg"]):
        code, _, err = run(capsys, data_dir, *args)
        assert code == 1 and "is not a facerec face store (its tables: notes)" in err
    con = sqlite3.connect(data_dir / "faces.db")
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["notes"]
    con.close()


def test_a_read_only_data_dir_still_lists_and_recognises(capsys, gallery: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The process may not write the folder (as a non-root user on a read-only dir).

    Tests run as root in CI, where permissions do not stop writes; the check is the
    one the store makes (`store.writable`), answered as for a read-only folder.
    """
    from app.pipeline import store as store_mod

    run(capsys, gallery, "identify", FR / "biden.jpg")  # the index is saved, the WAL closed
    before = {p.name: p.read_bytes() for p in gallery.iterdir() if p.is_file()}
    monkeypatch.setattr(store_mod, "writable", lambda path: False)
    code, out, err = run(capsys, gallery, "people")
    assert code == 0 and out.startswith("Biden"), err
    code, out, err = run(capsys, gallery, "identify", "--json", FR / "biden.jpg")
    assert code == 0 and json.loads(out)[0]["faces"][0]["name"] == "Biden", err
    code, _, err = run(capsys, gallery, "enroll", "Obama", FR / "obama.jpg")
    assert code == 1 and "is read-only here" in err and "unexpected" not in err
    # (As root the folder is really writable, so SQLite may add its -shm and -wal files;
    # the test of a really read-only folder, in test_store_index, checks that none appear.)
    assert {name: (gallery / name).read_bytes() for name in before} == before


def test_a_full_disk_says_so(capsys, gallery: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below ~30 KB free SQLite reports "disk I/O error" (its WAL cannot grow)."""
    from app.pipeline import store as store_mod

    real_connect = sqlite3.connect

    class FullDisk(sqlite3.Connection):
        def execute(self, sql, *args):  # type: ignore[no-untyped-def]
            if sql.startswith("INSERT INTO faces"):
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **k, factory=FullDisk))
    monkeypatch.setattr(store_mod, "disk_nearly_full", lambda folder: True)
    before = snapshot(gallery / "faces.db")
    code, _, err = run(capsys, gallery, "enroll", "Obama", FR / "obama.jpg")
    assert code == 1 and "is full: free some space" in err and "I/O" not in err, err
    assert snapshot(gallery / "faces.db") == before


def test_import_counts_the_people_it_created(capsys, data_dir: Path, tmp_path: Path) -> None:
    """Issue 13 item 4: "Anna Weiß" and "ANNA WEISS" are two people; case alone is not."""
    root = tmp_path / "photos"
    for folder, photo in [("Anna Weiß", "obama.jpg"), ("anna weiß", "obama2.jpg"),
                          ("ANNA WEISS", "biden.jpg")]:
        (root / folder).mkdir(parents=True)
        (root / folder / photo).write_bytes((FR / photo).read_bytes())
    code, out, err = run(capsys, data_dir, "import", root)
    assert code == 0, err
    assert "imported 3 face(s) for 2 people" in out
    code, out, _ = run(capsys, data_dir, "people", "--json")
    people = {p["name"].lower(): p["faces"] for p in json.loads(out)}
    assert people == {"anna weiss": 1, "anna weiß": 2}
