"""Every kind of bad input gets a clear message and a non-zero exit; the store is unchanged."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
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
        [sys.executable, "-c", "from app.pipeline.recognition.sources import list_cameras; "
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
    from app.pipeline.storage import store as store_mod

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
    from app.pipeline.storage import store as store_mod

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

# -- the data directory ------------------------------------------------------------------

def _another_users_dir(tmp_path: Path) -> Path:
    """A directory owned by someone else: made so as root, else one root owns."""
    if os.geteuid() == 0:
        d = tmp_path / "theirs"
        d.mkdir(mode=0o755)
        os.chown(d, 65534, 65534)  # nobody
        return d
    return Path("/")  # pragma: no cover - CI runs as root; as a user, / is root's


@pytest.mark.parametrize("kind", ["file", "dangling-symlink", "dev-null", "another-user"])
def test_a_data_dir_that_cannot_be_ours_is_one_clear_line(capsys, tmp_path: Path,
                                                          kind: str) -> None:
    """Not "unexpected FileExistsError": one line naming the path and what to do, exit 1."""
    if kind == "file":
        target = tmp_path / "afile"
        target.write_bytes(b"")
    elif kind == "dangling-symlink":
        target = tmp_path / "link"
        target.symlink_to(tmp_path / "nowhere")
    elif kind == "dev-null":
        target = Path("/dev/null")
    else:
        target = _another_users_dir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, target, "enroll", "Biden", FR / "biden.jpg")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "unexpected" not in err, err
    assert str(target) in err and "--data-dir" in err
    assert {"file": "is a file", "dangling-symlink": "does not exist", "dev-null": "is a device",
            "another-user": "belongs to another user"}[kind] in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere


def test_a_data_dir_that_cannot_be_created_is_one_clear_line(capsys, tmp_path: Path,
                                                             monkeypatch) -> None:
    """A parent the user may not write (root may write anywhere: the refusal is injected)."""
    target = tmp_path / "locked" / "facerec"
    real = Path.mkdir

    def deny(self: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", deny)
    code, _, err = run(capsys, target, "enroll", "Biden", FR / "biden.jpg")
    assert code == 1 and len(err.splitlines()) == 1 and "unexpected" not in err, err
    assert f"cannot create the data directory {target} (Permission denied)" in err


def test_the_data_dir_is_made_private_but_never_writable_again(tmp_path: Path) -> None:
    """Group and other access go; a dir its owner made read-only stays read-only."""
    from app.config import Paths

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    Paths(shared).ensure()
    assert shared.stat().st_mode & 0o777 == 0o700
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    Paths(locked).ensure()
    assert locked.stat().st_mode & 0o777 == 0o500


def test_an_empty_data_dir_is_a_usage_error(capsys, tmp_path: Path) -> None:
    """``--data-dir ""`` used to fall back, silently, to the default directory."""
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", "", "enroll", "Biden", str(FR / "biden.jpg")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--data-dir is empty" in err
    assert not (tmp_path / "home").exists()  # FACEREC_HOME, the default here: untouched


@pytest.fixture
def file_log(monkeypatch):
    """Commands that change the store write logs/facerec.log, as outside the tests.

    Call the function it gives at the start of the test: pytest sets the variable
    that keeps the log file off again before each test phase.
    """
    import logging

    handlers = logging.getLogger().handlers[:]
    yield lambda: monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    root = logging.getLogger()
    for h in root.handlers[:]:
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)


def test_a_non_utf8_data_dir_works(capsys, tmp_path: Path, file_log) -> None:
    """Not "unexpected TypeError: save_index()" and logging tracebacks: it just works."""
    file_log()
    data = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9-data"))
    (data / "logs").mkdir(parents=True)
    old_log = data / "logs" / "facerec.log"
    old_log.write_text("written by an older facerec\n")
    old_log.chmod(0o644)
    code, out, err = run(capsys, data, "enroll", "Biden", FR / "biden.jpg")
    assert code == 0 and "Traceback" not in err and "unexpected" not in err, err
    code, out, err = run(capsys, data, "identify", "--json", FR / "biden.jpg")
    assert code == 0, err
    assert [f["name"] for f in json.loads(out)[0]["faces"]] == ["Biden"]
    assert (data / "faces.hnsw").is_file()
    # The log names people: owner-only, even the file an older version left 0644.
    assert old_log.stat().st_mode & 0o777 == 0o600
    assert "caf\\udce9-data" in old_log.read_text(encoding="utf-8")


def test_a_log_that_cannot_be_written_is_said_once(capsys, gallery: Path, file_log) -> None:
    """A full disk (/dev/full) under the log: one warning, and the command does its job."""
    file_log()
    (gallery / "logs").mkdir(exist_ok=True)
    (gallery / "logs" / "facerec.log").symlink_to("/dev/full")
    code, out, err = run(capsys, gallery, "rename", "Biden", "Joe Biden")
    assert code == 0 and out == "renamed to Joe Biden\n"
    assert "Traceback" not in err and "Logging error" not in err, err
    assert err.count("cannot write the log file") == 1
    assert "No space left on device" in err
    code, out, _ = run(capsys, gallery, "people", "--json")
    assert [p["name"] for p in json.loads(out)] == ["Joe Biden"]


def test_a_photo_too_large_says_how_large(capsys, gallery: Path, tmp_path: Path) -> None:
    """Not a "decompression bomb": its size, and the limit."""
    from tests.corpus import png_declaring

    big = tmp_path / "panorama.png"
    big.write_bytes(png_declaring(20_000, 20_000))
    code, _, err = run(capsys, gallery, "enroll", "Obama", big)
    assert code == 1 and "bomb" not in err
    assert "panorama.png: image too large (20000x20000 pixels, 400 megapixels; " \
           "the limit is 100 megapixels)" in err


# -- exports -----------------------------------------------------------------------------

def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    """OWASP CSV injection: a text cell starting with = + - @ tab or CR gets a leading '."""
    import csv

    from app.pipeline.storage.export import write_csv

    hostile = ['=HYPERLINK("http://evil.example","x")', "@SUM(A1)", "+cmd", "-2+3",
               "\tindented", "\rreturn"]
    out = tmp_path / "export.csv"
    out.write_text("an export made by an older version\n")
    out.chmod(0o644)
    assert write_csv(out, ["name", "score"], [[h, "-0.125"] for h in hostile]
                     + [["Ana María", 0.5]]) == len(hostile) + 1
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert [r[0] for r in rows[1:]] == ["'" + h for h in hostile] + ["Ana María"]
    assert {r[1] for r in rows[1:]} == {"-0.125", "0.5"}  # numbers stay numbers
    assert out.stat().st_mode & 0o777 == 0o600


def test_eval_scores_export_is_safe_and_private(capsys, data_dir: Path, tmp_path: Path) -> None:
    """``eval --scores`` writes file names: neutralised, and the file is 0600."""
    import csv

    images = tmp_path / "pairs"
    images.mkdir()
    for name, photo in (("=cmd.jpg", "obama.jpg"), ("-1+2.jpg", "obama2.jpg"),
                        ("@x.jpg", "biden.jpg")):
        (images / name).write_bytes((FR / photo).read_bytes())
    pairs = images / "pairs.csv"
    pairs.write_text("file_x,file_y,Decision\n=cmd.jpg,-1+2.jpg,Yes\n=cmd.jpg,@x.jpg,No\n",
                     encoding="utf-8")
    scores = tmp_path / "scores.csv"
    code, _, err = run(capsys, data_dir, "eval", pairs, "--scores", scores)
    assert code == 0, err
    rows = list(csv.DictReader(scores.open(encoding="utf-8", newline="")))
    assert [(r["file_x"], r["file_y"]) for r in rows] == [("'=cmd.jpg", "'-1+2.jpg"),
                                                          ("'=cmd.jpg", "'@x.jpg")]
    assert all(float(r["score"]) for r in rows)
    assert scores.stat().st_mode & 0o777 == 0o600


# -- video sources -----------------------------------------------------------------------

def _facerec(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command line in a process of its own (one that may hang or crash is contained)."""
    import sys

    from tests.conftest import REPO

    try:
        return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"facerec {' '.join(map(str, args))} hung")


def test_watch_a_fifo_never_hangs(data_dir: Path, tmp_path: Path) -> None:
    """A FIFO with no writer used to block open() forever."""
    fifo = tmp_path / "pipe.avi"
    os.mkfifo(fifo)
    done = _facerec("--data-dir", data_dir, "watch", fifo)
    assert done.returncode == 1
    assert done.stderr == f"facerec: error: {fifo}: is a FIFO (named pipe), not a video file\n"


def test_watch_a_device_is_refused(data_dir: Path) -> None:
    done = _facerec("--data-dir", data_dir, "watch", "/dev/zero")
    assert done.returncode == 1
    assert done.stderr == "facerec: error: /dev/zero: is a device, not a video file\n"


def test_a_video_with_a_non_utf8_name_plays(face_video: Path, tmp_path: Path) -> None:
    """OpenCV crashed the process (SIGSEGV) on such a name; run apart for that reason."""
    import sys

    from tests.conftest import REPO

    raw = os.fsencode(tmp_path) + b"/caf\xe9.avi"
    with open(raw, "wb") as f:
        f.write(face_video.read_bytes())
    code = ("import sys, os\nfrom app.pipeline.recognition.sources import VideoSource\n"
            "s = VideoSource(os.fsdecode(sys.argv[1].encode('utf-8', 'surrogateescape')))\n"
            "n = 0\nwhile s.read() is not None: n += 1\nprint(n)\n")
    done = subprocess.run([sys.executable, "-c", code, os.fsdecode(raw)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.strip() == "72"


def _garbage_server() -> tuple[socket.socket, int]:
    """A local TCP server that answers every request with bytes that are not HTTP."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"garbage\r\n\x00\xff not a response\r\n\r\n")
                except OSError:
                    pass
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_ffmpeg_chatter_stays_off_stderr(tmp_path: Path) -> None:
    """A hostile stream: our one line only, not FFmpeg's "[http @ 0x...] ..." lines."""
    srv, port = _garbage_server()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG", "FACEREC_NATIVE_LOGS")}
    url = f"http://127.0.0.1:{port}/live"
    try:
        done = _facerec("--data-dir", tmp_path / "d", "watch", url, env=env)
    finally:
        srv.close()
    assert done.returncode == 1
    assert done.stderr == f"facerec: error: cannot open stream {url}\n"


# -- a gallery changed by another process while watch runs -------------------------------

class _Lines:
    """The JSON lines a child process writes, read straight from its pipe."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf, self.lines = fd, b"", []

    def _take(self, chunk: bytes) -> None:
        self.buf += chunk
        *whole, self.buf = self.buf.split(b"\n")
        self.lines += [json.loads(w) for w in whole if w.strip()]

    def until(self, pred) -> None:  # noqa: ANN001
        """Read (blocking) until a line satisfies *pred*, or the end."""
        while not any(pred(x) for x in self.lines):
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            self._take(chunk)

    def drain(self) -> None:
        """Read what is already in the pipe, without waiting for more."""
        os.set_blocking(self.fd, False)
        try:
            while chunk := os.read(self.fd, 65536):
                self._take(chunk)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.fd, True)

    def rest(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self._take(chunk)


@pytest.mark.parametrize("change", ["remove", "rename"])
def test_watch_follows_a_change_made_by_another_process(capsys, data_dir: Path, tmp_path: Path,
                                                        change: str) -> None:
    """``remove``/``rename`` while ``watch`` runs: the next frames say so (issue 13, item 3).

    Deterministic: watch is stopped (SIGSTOP) after the first frame that names him, the
    gallery is changed through a second store connection, and watch is resumed after
    its refresh interval has passed, so it refreshes before the next frame it reads.
    Every frame it had printed by then is known (read from the pipe while it is
    stopped); the frame in flight then, and the one it may have read just before it
    stopped, can still carry the old name; none after them may.
    """
    import signal
    import sys
    import time

    from app.cli import WATCH_REFRESH_S
    from app.pipeline.storage.store import FaceStore
    from tests.conftest import REPO
    from tests.video import write_slideshow

    if not hasattr(signal, "SIGSTOP"):  # pragma: no cover - POSIX only
        pytest.skip("needs SIGSTOP")
    assert run(capsys, data_dir, "enroll", "Barack Obama", FR / "obama.jpg")[0] == 0
    assert run(capsys, data_dir, "enroll", "Joe Biden", FR / "biden.jpg")[0] == 0
    video = write_slideshow(tmp_path / "obama.avi", [FR / "obama3.jpg"], frames_each=72)
    proc = subprocess.Popen([sys.executable, "-m", "app", "--data-dir", str(data_dir), "watch",
                             str(video), "--json"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    out = _Lines(proc.stdout.fileno())

    def names(line: dict) -> list:
        return [f["name"] for f in line["faces"]]
    try:
        out.until(lambda x: "Barack Obama" in names(x))
        os.kill(proc.pid, signal.SIGSTOP)
        out.drain()
        seen_before = out.lines[-1]["frame"]
        with FaceStore(data_dir / "faces.db") as other:
            if change == "remove":
                other.remove("Barack Obama")
            else:
                other.rename("Barack Obama", "Barack H. Obama")
        time.sleep(WATCH_REFRESH_S + 0.3)  # its refresh is due the moment it resumes
        os.kill(proc.pid, signal.SIGCONT)
        out.rest()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert any("Barack Obama" in names(x) for x in out.lines if x["frame"] <= seen_before)
    after = [x for x in out.lines if x["frame"] > seen_before + 2 and x["faces"]]
    assert len(after) >= 10, "the video ended before watch was stopped: nothing to check"
    assert not any("Barack Obama" in names(x) for x in after)
    if change == "rename":
        assert all(names(x) == ["Barack H. Obama"] for x in after)
