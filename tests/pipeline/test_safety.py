"""Crash safety, concurrent use, privacy and backups: never lose, corrupt or leak a face."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.pipeline.storage.store import FaceStore
from tests.conftest import DEEPFACE, FR

PY = [sys.executable, "-m", "app"]


def cli(data_dir: Path, *args: object, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PY, "--data-dir", str(data_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def small_copy(src: Path, dst: Path, side: int = 640) -> Path:
    im = Image.open(src).convert("RGB")
    im.thumbnail((side, side))
    dst.parent.mkdir(parents=True, exist_ok=True)
    im.save(dst, quality=92)
    return dst


@pytest.fixture(scope="module")
def import_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("import")
    for person, photos in {"Obama": [FR / "obama.jpg", FR / "obama2.jpg"],
                           "Jolie": [DEEPFACE / "img1.jpg", DEEPFACE / "img2.jpg"],
                           "Biden": [FR / "biden.jpg"]}.items():
        for p in photos:
            small_copy(p, root / person / p.name)
    return root


def store_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(con.execute(
            "SELECT p.name, count(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id "
            "GROUP BY p.id").fetchall())
    finally:
        con.close()


def test_import_killed_at_random_moments_never_half_writes(tmp_path: Path, import_dir: Path) -> None:
    data = tmp_path / "data"
    photos = {"Obama": 2, "Jolie": 2, "Biden": 1}
    t0 = time.perf_counter()
    assert cli(data, "import", import_dir).returncode == 0
    full = time.perf_counter() - t0
    rng = random.Random(20261121)
    for _ in range(20):
        proc = subprocess.Popen([*PY, "--data-dir", str(data), "import", str(import_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, full * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts = store_counts(data / "faces.db")
        # One transaction: every person has the same number of complete imports.
        rounds = {counts[name] / n for name, n in photos.items()}
        assert len(rounds) == 1 and next(iter(rounds)).is_integer(), counts
    # The next start: the index agrees with the store, and recognition works.
    out = cli(data, "identify", "--json", FR / "obama3.jpg")
    assert out.returncode == 0 and json.loads(out.stdout)[0]["faces"][0]["name"] == "Obama"
    meta = json.loads((data / "faces.hnsw.json").read_text())
    assert meta["count"] == sum(store_counts(data / "faces.db").values())
    # A kill between the commit and the index rename leaves a temp file holding the
    # whole graph; the next start removes it (issue 13 item 8).
    assert not list(data.glob(".faces.hnsw-*.tmp"))


def test_two_processes_enrolling_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = small_copy(FR / "obama.jpg", tmp_path / "a.jpg")
    b = small_copy(DEEPFACE / "img1.jpg", tmp_path / "b.jpg")
    for round_ in range(3):
        procs = [subprocess.Popen([*PY, "--data-dir", str(data), "enroll", name, str(photo)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, photo in (("Obama", a), ("Jolie", b))]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert store_counts(data / "faces.db") == {"Obama": round_ + 1, "Jolie": round_ + 1}
    out = cli(data, "identify", "--json", FR / "obama2.jpg", DEEPFACE / "img2.jpg")
    assert [r["faces"][0]["name"] for r in json.loads(out.stdout)] == ["Obama", "Jolie"]


def test_store_held_by_another_process_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli(data, "enroll", "Obama", FR / "obama.jpg").returncode == 0
    before = store_counts(data / "faces.db")
    holder = sqlite3.connect(data / "faces.db", timeout=1)
    holder.execute("BEGIN IMMEDIATE")  # another writer mid-transaction
    try:
        out = cli(data, "enroll", "Jolie", DEEPFACE / "img1.jpg",
                  env={"FACEREC_LOCK_TIMEOUT_MS": "500"})
    finally:
        holder.rollback()
        holder.close()
    assert out.returncode == 1
    assert "in use by another facerec process" in out.stderr and "Traceback" not in out.stderr
    assert store_counts(data / "faces.db") == before


def test_data_dir_and_store_are_private(tmp_path: Path, capsys) -> None:
    data = tmp_path / "private"
    assert main(["--data-dir", str(data), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    assert oct(data.stat().st_mode & 0o777) == oct(0o700)
    for name in ("faces.db", "faces.hnsw"):
        assert oct((data / name).stat().st_mode & 0o777) == oct(0o600)


def test_deleting_a_person_leaves_no_recoverable_bytes(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "enroll", "Eve", str(DEEPFACE / "img1.jpg")]) == 0
    assert main(["--data-dir", str(data), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    with FaceStore(data / "faces.db") as store:
        eve = store.person("Eve")
        (face,) = store.faces_of(eve.id)
        face_id, thumb = face.id, face.thumbnail
        g = store.gallery()
        embedding = g.embeddings[list(g.face_ids).index(face_id)].astype("<f4").tobytes()
    assert main(["--data-dir", str(data), "remove", "Eve"]) == 0
    blob = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert embedding[:256] not in blob
    assert embedding[-256:] not in blob
    assert thumb[-300:-2] not in blob  # the JPEG thumbnail (its image data) is gone too


SOCKET_AUDIT = r"""
import sys, json
events = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request",
                 "http.client.connect"):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
import socket
real_connect = socket.socket.connect
def refuse(self, *a):
    events.append(["blocked connect", repr(a)[:200]])
    raise OSError("network blocked by test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from app.cli import main
code = 0
for argv in json.loads(sys.argv[1]):
    code |= main(argv)
print("EVENTS" + json.dumps(events))
sys.exit(code)
"""


def test_full_session_makes_no_network_connection(tmp_path: Path, face_video: Path) -> None:
    data = str(tmp_path / "data")
    session = [
        ["--data-dir", data, "enroll", "Obama", str(FR / "obama.jpg")],
        ["--data-dir", data, "identify", "--json", str(FR / "obama2.jpg")],
        ["--data-dir", data, "watch", str(face_video), "--max-frames", "30"],
        ["--data-dir", data, "people"],
        ["--data-dir", data, "self-test"],
    ]
    out = subprocess.run([sys.executable, "-c", SOCKET_AUDIT, json.dumps(session)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout.split("EVENTS", 1)[1])
    inet = [e for e in events if "AF_UNIX" not in e[1] and "'/" not in e[1]]
    assert inet == []


# -- backup and restore -----------------------------------------------------------------

def test_backup_restore_round_trip_plain_and_encrypted(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    assert cli(src, "enroll", "Obama", FR / "obama.jpg").returncode == 0
    assert cli(src, "enroll", "Jolie", DEEPFACE / "img1.jpg").returncode == 0
    secret = {"FACEREC_PASSPHRASE": "correct horse battery staple"}
    assert cli(src, "backup", tmp_path / "plain.fbk").returncode == 0
    assert cli(src, "backup", "--encrypt", tmp_path / "sealed.fbk", env=secret).returncode == 0
    sealed = (tmp_path / "sealed.fbk").read_bytes()
    assert b"SQLite format 3" not in sealed and b"Obama" not in sealed

    wrong = cli(dst, "restore", tmp_path / "sealed.fbk", env={"FACEREC_PASSPHRASE": "nope"})
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
    assert not (dst / "faces.db").exists() or store_counts(dst / "faces.db") == {}

    assert cli(dst, "restore", tmp_path / "sealed.fbk", env=secret).returncode == 0
    out = cli(dst, "identify", "--json", FR / "obama2.jpg", DEEPFACE / "img2.jpg")
    assert [r["faces"][0]["name"] for r in json.loads(out.stdout)] == ["Obama", "Jolie"]

    refused = cli(dst, "restore", tmp_path / "plain.fbk")
    assert refused.returncode == 1 and "--replace" in refused.stderr
    assert cli(dst, "restore", "--replace", tmp_path / "plain.fbk").returncode == 0


@pytest.mark.parametrize("which", ["plain", "sealed"])
def test_tampered_backup_is_refused_and_store_kept(tmp_path: Path, which: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    secret = {"FACEREC_PASSPHRASE": "pass phrase"}
    assert cli(src, "enroll", "Obama", FR / "obama.jpg").returncode == 0
    extra = ["--encrypt"] if which == "sealed" else []
    assert cli(src, "backup", *extra, tmp_path / "b.fbk", env=secret).returncode == 0
    assert cli(dst, "enroll", "Jolie", DEEPFACE / "img1.jpg").returncode == 0
    data = bytearray((tmp_path / "b.fbk").read_bytes())
    data[-3000] ^= 0x20
    (tmp_path / "b.fbk").write_bytes(bytes(data))
    out = cli(dst, "restore", "--replace", tmp_path / "b.fbk", env=secret)
    assert out.returncode == 1 and ("altered" in out.stderr)
    assert store_counts(dst / "faces.db") == {"Jolie": 1}


def test_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.fbk"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    out = cli(tmp_path / "d", "restore", junk)
    assert out.returncode == 1 and "not a facerec backup" in out.stderr


def test_restore_under_a_running_recognizer(tmp_path: Path, capsys) -> None:
    """A process that has the store open sees the restored gallery; nothing is lost."""
    from app.config import Paths, Settings
    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.recognizer import Recognizer

    src, dst = tmp_path / "src", tmp_path / "dst"
    assert main(["--data-dir", str(src), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    assert main(["--data-dir", str(src), "backup", str(tmp_path / "b.fbk")]) == 0
    assert main(["--data-dir", str(dst), "enroll", "Jolie", str(DEEPFACE / "img1.jpg")]) == 0
    with Recognizer.open(Paths(dst), Settings()) as running:
        assert main(["--data-dir", str(dst), "restore", "--replace", str(tmp_path / "b.fbk")]) == 0
        assert running.refresh()  # the generation moved: it reloads
        faces = running.process(load_image(FR / "obama2.jpg")).faces
        assert [f.name for f in faces] == ["Obama"]
        running.enroll("Biden", [running.prepare_file(FR / "biden.jpg").face])
    assert store_counts(dst / "faces.db") == {"Obama": 1, "Biden": 1}  # its write landed


# -- hostile backups and broken machines (issue 13) ---------------------------------------

def store_state(db: Path) -> tuple:
    """Everything a restore could change: generation, people, faces and their bytes."""
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone(),
                con.execute("SELECT id, name, key FROM people ORDER BY id").fetchall(),
                con.execute("SELECT id, person_id, embedding, thumbnail FROM faces ORDER BY id")
                .fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with Barack Obama and Joe Biden enrolled from real photos."""
    data = tmp_path_factory.mktemp("two") / "data"
    assert main(["--data-dir", str(data), "enroll", "Barack Obama", str(FR / "obama.jpg")]) == 0
    assert main(["--data-dir", str(data), "enroll", "Joe Biden", str(FR / "biden.jpg")]) == 0
    return data


@pytest.fixture(scope="module")
def one_person(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("one") / "data"
    assert main(["--data-dir", str(data), "enroll", "Jolie", str(DEEPFACE / "img1.jpg")]) == 0
    return data


@pytest.fixture
def target(tmp_path: Path, one_person: Path) -> Path:
    """A data directory holding one person (Jolie), whom a refused restore must leave alone."""
    return Path(shutil.copytree(one_person, tmp_path / "target"))


def restore(capsys, data: Path, *args: object) -> tuple[int, str]:
    code = main(["--data-dir", str(data), "restore", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected" not in err, err
    return code, err


def crafted_backup(two_people: Path, tmp_path: Path, change: str | Callable) -> Path:
    """A plain backup of a copy of *two_people*'s store changed by *change* (SQL, or a function
    of the connection), wrapped by our writer (its checksum covers only the payload: anyone
    can make one)."""
    from app.pipeline.storage.backup import write_backup

    work = tmp_path / "crafted"
    work.mkdir()
    db = work / "faces.db"
    shutil.copy(two_people / "faces.db", db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = DELETE")
    if callable(change):
        change(con)
    else:
        con.execute(change)
    con.close()
    write_backup(db, tmp_path / "crafted.fbk")
    return tmp_path / "crafted.fbk"


BIDEN_ID = "(SELECT id FROM people WHERE name = 'Joe Biden')"


def flip_bit(con: sqlite3.Connection) -> None:
    fid, blob = con.execute(f"SELECT id, embedding FROM faces WHERE person_id = {BIDEN_ID}").fetchone()
    flipped = bytearray(blob)
    flipped[43] ^= 1 << 6
    con.execute("UPDATE faces SET embedding = ? WHERE id = ?", (bytes(flipped), fid))


def not_finite(con: sqlite3.Connection) -> None:
    vec = np.full(512, 512 ** -0.5, dtype="<f4")
    vec[7] = np.nan
    con.execute("UPDATE faces SET embedding = ?", (vec.tobytes(),))
CRAFTS = {
    # The attack: every face enrolled after the restore becomes Joe Biden's.
    "trigger": f"CREATE TRIGGER plant AFTER INSERT ON faces BEGIN UPDATE faces SET person_id = "
               f"{BIDEN_ID} WHERE id = new.id; END",
    "view": "CREATE VIEW everyone AS SELECT name FROM people",
    "extra table": "CREATE TABLE notes (x)",
    "extra column": "ALTER TABLE people ADD COLUMN note TEXT",
    "missing index": "DROP INDEX faces_person",
    "escape in a name": "UPDATE people SET name = 'Joe' || char(27) || '[2J Biden', "
                        "key = 'joe' || char(27) || '[2j biden' WHERE name = 'Joe Biden'",
    "carriage return in a name": "UPDATE people SET name = 'Joe' || char(13) || 'Biden', "
                                 "key = 'joe' || char(13) || 'biden' WHERE name = 'Joe Biden'",
    "name not in normal form": "UPDATE people SET name = '  Joe   Biden ' WHERE name = 'Joe Biden'",
    "key of another name": "UPDATE people SET key = 'barack obama 2' WHERE name = 'Joe Biden'",
    "non-finite embedding": not_finite,
    # Issue 13 item 1's flipped bit (bit 6 of byte 43): a huge component, no longer unit.
    "flipped bit": flip_bit,
    "1-byte embedding": "UPDATE faces SET embedding = x'00'",
    "text where a time goes": "UPDATE people SET created = 'yesterday'",
    "escape in a source": "UPDATE faces SET source = 'x' || char(27) || ']0;owned' || char(7)",
    "change from the future": "UPDATE people SET changed = 10000",
    "newer schema": "PRAGMA user_version = 99",
    "no schema version": "PRAGMA user_version = 0",
}


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_restore_accepts_only_a_store_as_facerec_makes_it(capsys, two_people: Path, target: Path,
                                                          tmp_path: Path, craft: str) -> None:
    """Issue 13 item 2: SQL planted in a backup would run on our own writes (a trigger made
    every newly enrolled face Joe Biden's); names with ESC or CR reached the terminal raw."""
    backup = crafted_backup(two_people, tmp_path, CRAFTS[craft])
    before = store_state(target / "faces.db")
    code, err = restore(capsys, target, "--replace", backup)
    assert code == 1 and "not a usable facerec store" in err and "nothing was restored" in err
    assert "\x1b" not in err and "\r" not in err
    assert len(err.strip().splitlines()) == 1
    assert store_state(target / "faces.db") == before
    assert not [p for p in target.iterdir() if p.name.startswith(".restore")]


def test_a_backup_of_an_older_schema_still_restores(capsys, target: Path, tmp_path: Path) -> None:
    """The schema check follows the store's own migrations: a version-1 store is ours too."""
    from app.pipeline.storage.backup import write_backup
    from app.pipeline.storage.store import _MIGRATIONS

    old = tmp_path / "old" / "faces.db"
    old.parent.mkdir()
    con = sqlite3.connect(old, isolation_level=None)
    for statement in _MIGRATIONS[1].split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    vec = np.random.default_rng(1).normal(size=512).astype("<f4")
    vec /= np.linalg.norm(vec)
    con.execute("INSERT INTO people(name, key, created) VALUES ('Ada Lovelace', 'ada lovelace', 1)")
    con.execute("INSERT INTO faces(person_id, embedding, created) VALUES (1, ?, 1)", (vec.tobytes(),))
    con.close()
    write_backup(old, tmp_path / "old.fbk")
    code, err = restore(capsys, target, "--replace", tmp_path / "old.fbk")
    assert code == 0, err
    assert store_counts(target / "faces.db") == {"Ada Lovelace": 1}


def test_a_backup_with_another_page_size_restores(capsys, target: Path, tmp_path: Path) -> None:
    """SQLite cannot copy pages of another size into a WAL store: the copy is converted."""
    from app.pipeline.storage.backup import write_backup
    from app.pipeline.storage.store import NewFace

    other = tmp_path / "other" / "faces.db"
    with FaceStore(other) as store:
        store.add_faces("Ada Lovelace", [NewFace(np.ones(512, np.float32))])
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("PRAGMA page_size = 8192")
    con.execute("VACUUM")
    con.close()
    write_backup(other, tmp_path / "big-pages.fbk")
    code, err = restore(capsys, target, "--replace", tmp_path / "big-pages.fbk")
    assert code == 0, err
    assert store_counts(target / "faces.db") == {"Ada Lovelace": 1}


def test_restore_refuses_what_is_not_a_backup_file_without_reading_it(capsys, target: Path,
                                                                      tmp_path: Path) -> None:
    """Item 12: /dev/zero grew to 23 GB and was OOM-killed; a FIFO blocked; a header line
    with no end, or sizes that do not fit the file, were read whole."""
    before = store_state(target / "faces.db")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    endless = tmp_path / "endless.fbk"
    endless.write_bytes(b"FACEREC-BACKUP 1\n" + b"{" * 100_000)
    real = tmp_path / "real.fbk"
    assert main(["--data-dir", str(target), "backup", str(real)]) == 0
    capsys.readouterr()
    data = real.read_bytes()
    magic, head, body = data.split(b"\n", 2)
    short = tmp_path / "short.fbk"
    short.write_bytes(data[:-1000])
    huge = tmp_path / "huge.fbk"
    header = json.loads(head)
    huge.write_bytes(magic + b"\n" + json.dumps({**header, "size": 3 * 2**40}).encode() + b"\n"
                     + body)
    for path, why in [("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                      (tmp_path, "not a regular file"), (endless, "damaged backup header"),
                      (short, "truncated"), (huge, "damaged backup header")]:
        code, err = restore(capsys, target, "--replace", path)
        assert code == 1 and why in err, (path, err)
        assert store_state(target / "faces.db") == before


# Runs facerec and prints its peak resident memory (kB) as the last line of stderr. VmHWM is
# this program's own: the rusage of a child also counts the forked parent before exec.
PEAK_MEMORY = r"""
import sys
from app.cli import main
code = main(sys.argv[1:])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(line.split()[1], file=sys.stderr)
sys.exit(code)
"""


def test_restore_reads_a_large_file_in_bounded_memory(target: Path, tmp_path: Path) -> None:
    """Item 12: a 3 GB file took 6.3 GB. A 256 MB (sparse) payload with a wrong checksum is
    streamed through and refused in far less memory than its size."""
    size = 256 * 2**20
    big = tmp_path / "big.fbk"
    head = json.dumps({"encrypted": False, "format": 1, "sha256": "0" * 64, "size": size},
                      sort_keys=True).encode() + b"\n"
    with open(big, "wb") as f:
        f.write(b"FACEREC-BACKUP 1\n" + head)
        f.truncate(f.tell() + size)
    before = store_state(target / "faces.db")
    out = subprocess.run([sys.executable, "-c", PEAK_MEMORY, "--data-dir", str(target), "restore",
                          "--replace", str(big)], capture_output=True, text=True, timeout=300)
    *err, peak_kb = out.stderr.splitlines()
    assert out.returncode == 1 and "checksum mismatch" in err[0], out.stderr
    assert int(peak_kb) * 1024 < size / 2
    assert store_state(target / "faces.db") == before
    assert not [p for p in target.iterdir() if p.name.startswith(".restore")]


@pytest.mark.parametrize("change", [{"n": 2**24}, {"p": 100000}, {"r": 4096}, {"n": 3},
                                    {"kdf": "none"}, {"salt": "00"}],
                         ids=["n-2e24", "p-100000", "r-4096", "n-3", "kdf", "salt"])
def test_restore_refuses_costly_or_foreign_key_derivation(capsys, target: Path, tmp_path: Path,
                                                          change: dict) -> None:
    """Item 13: scrypt's cost came from the file (n=2^24: "unexpected MemoryError"; p=100000:
    a minute of CPU). Only bounded settings are accepted, before any work is done."""
    secret = tmp_path / "secret"
    secret.write_text("pass phrase\n")
    sealed = tmp_path / "sealed.fbk"
    assert main(["--data-dir", str(target), "backup", "--encrypt", "--passphrase-file", str(secret),
                 str(sealed)]) == 0
    capsys.readouterr()
    magic, head, body = sealed.read_bytes().split(b"\n", 2)
    header = {**json.loads(head), **change}
    sealed.write_bytes(magic + b"\n" + json.dumps(header, sort_keys=True).encode() + b"\n" + body)
    before = store_state(target / "faces.db")
    code, err = restore(capsys, target, "--replace", "--passphrase-file", secret, sealed)
    assert code == 1 and "key-derivation settings facerec does not accept" in err, err
    assert store_state(target / "faces.db") == before


def test_a_passphrase_file_alone_encrypts(capsys, target: Path, tmp_path: Path) -> None:
    """Item 10: --passphrase-file without --encrypt wrote a plaintext backup and exited 0. A
    passphrase file asks for encryption by itself."""
    secret = tmp_path / "secret"
    secret.write_text("pass phrase\n")
    out = tmp_path / "b.fbk"
    assert main(["--data-dir", str(target), "backup", "--passphrase-file", str(secret), str(out)]) == 0
    assert "encrypted (AES-256-GCM" in capsys.readouterr().out
    data = out.read_bytes()
    assert b'"encrypted": true' in data and b"SQLite format 3" not in data and b"Jolie" not in data
    dst = tmp_path / "dst"
    code, err = restore(capsys, dst, "--passphrase-file", secret, out)
    assert code == 0 and store_counts(dst / "faces.db") == {"Jolie": 1}


@pytest.mark.parametrize("plant", ["file", "symlink"])
def test_backup_never_writes_through_a_planted_file(capsys, target: Path, tmp_path: Path,
                                                    plant: str) -> None:
    """Item 11: `<out>.tmp` was opened without O_EXCL/O_NOFOLLOW: a planted 0666 file made the
    backup 0666, a planted link made it overwrite the link's target."""
    out = tmp_path / "b.fbk"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / "b.fbk.tmp"
    if plant == "file":
        planted.write_bytes(b"")
        planted.chmod(0o666)
    else:
        planted.symlink_to(victim)
    assert main(["--data-dir", str(target), "backup", str(out)]) == 0
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)
    assert victim.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.fbk")] == []


def test_passphrase_files_and_file_names_that_cannot_work(capsys, target: Path,
                                                          tmp_path: Path) -> None:
    """Items 18/19: `backup ""`, a non-UTF-8 or endless passphrase file each gave "unexpected
    <Exception>"; a passphrase saved with a UTF-8 BOM was called wrong."""
    out = tmp_path / "b.fbk"
    latin = tmp_path / "latin1"
    latin.write_bytes("pässphrase".encode("latin-1"))
    for args, why in [(["backup", ""], "give the backup a file name"),
                      (["backup", str(tmp_path)], "is a folder"),
                      (["backup", str(target / "faces.db")], "the face store itself"),
                      (["backup", "--passphrase-file", str(latin), str(out)], "not UTF-8"),
                      (["backup", "--passphrase-file", "/dev/zero", str(out)],
                       "not a passphrase file")]:
        code = main(["--data-dir", str(target), *args])
        err = capsys.readouterr().err
        assert code in (1, 2) and why in err and "unexpected" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()
    # Saved by an editor that writes a byte order mark (Notepad): the same passphrase.
    plain = tmp_path / "plain"
    plain.write_text("pässphrase\n", encoding="utf-8")
    bom = tmp_path / "bom"
    bom.write_text("pässphrase\r\n", encoding="utf-8-sig")
    assert main(["--data-dir", str(target), "backup", "--passphrase-file", str(plain), str(out)]) == 0
    capsys.readouterr()
    code, err = restore(capsys, tmp_path / "dst", "--passphrase-file", bom, out)
    assert code == 0, err


def test_restore_on_a_full_disk_leaves_the_store(target: Path, tmp_path: Path) -> None:
    """Item 18: a restore that cannot write (here: the file-size limit, as a full disk does)
    says so in one line; the store and the data directory are as they were."""
    src = tmp_path / "src"
    assert cli(src, "enroll", "Obama", FR / "obama.jpg").returncode == 0
    assert cli(src, "backup", tmp_path / "b.fbk").returncode == 0
    before = store_state(target / "faces.db")
    # The payload (tens of kB) is bigger than 16 kB: its copy cannot be written.
    small_files = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384)); "
                   "from app.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", small_files, "--data-dir", str(target), "restore",
                          "--replace", str(tmp_path / "b.fbk")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "cannot write in" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert store_state(target / "faces.db") == before
    assert not [p for p in target.iterdir() if p.name.startswith(".restore")]


def test_restore_replaces_a_damaged_store_and_keeps_it(capsys, target: Path,
                                                       tmp_path: Path) -> None:
    """Item 19: a damaged store says "restore it from a backup", and `restore --replace` failed
    with the same message. It restores now; the damaged file is kept, renamed, and named."""
    assert main(["--data-dir", str(target), "backup", str(tmp_path / "b.fbk")]) == 0
    capsys.readouterr()
    for side in target.glob("faces.db-*"):
        side.unlink()
    garbage = np.random.default_rng(2).bytes(8192)
    (target / "faces.db").write_bytes(garbage)
    code, err = restore(capsys, target, tmp_path / "b.fbk")
    assert code == 1 and "damaged" in err and "--replace" in err
    assert (target / "faces.db").read_bytes() == garbage
    code, err = restore(capsys, target, "--replace", tmp_path / "b.fbk")
    assert code == 0, err
    (kept,) = target.glob("faces.damaged-*.db")
    assert kept.read_bytes() == garbage and str(kept) in err
    assert store_counts(target / "faces.db") == {"Jolie": 1}
    out = cli(target, "identify", "--json", DEEPFACE / "img2.jpg")
    assert json.loads(out.stdout)[0]["faces"][0]["name"] == "Jolie"


# Runs facerec and kills it (SIGKILL) at an exact moment: at the Nth sqlite3.connect whose
# database contains a text, or at the first file opened after it.
KILL_AT = r"""
import os, signal, sys
want, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = 0
def hook(event, args):
    global seen
    if event == "sqlite3.connect" and want in str(args[0]):
        seen += 1
        if seen == nth and when == "now":
            os.kill(os.getpid(), signal.SIGKILL)
    elif event == "open" and seen >= nth and when == "next-open":
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from app.cli import main
sys.exit(main(sys.argv[4:]))
"""


def killed(data: Path, at: tuple[str, int, str], *args: object,
           env: dict[str, str] | None = None) -> None:
    out = subprocess.run([sys.executable, "-c", KILL_AT, *map(str, at), "--data-dir", str(data),
                          *map(str, args)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    assert out.returncode == -signal.SIGKILL, out.stderr


def test_a_killed_restore_leaves_no_decrypted_copy(two_people: Path, tmp_path: Path) -> None:
    """Item 5: a restore killed once the payload was written left a decrypted `.restore-*.db`
    in the data directory for ever, still holding a person removed later."""
    secret = {"FACEREC_PASSPHRASE": "pass phrase"}
    assert cli(two_people, "backup", "--encrypt", tmp_path / "b.fbk", env=secret).returncode == 0
    data = tmp_path / "data"
    killed(data, (".restore-", 1, "now"), "restore", tmp_path / "b.fbk", env=secret)
    left = [p for p in data.iterdir() if p.name.startswith(".restore-")]
    assert left and b"SQLite format 3" in left[0].read_bytes()  # killed at the moment meant
    assert all(p.stat().st_mode & 0o077 == 0 for p in left)
    # The next run of any command that opens the store clears it.
    assert cli(data, "people").returncode == 0
    assert [p.name for p in data.iterdir() if p.name.startswith(".restore-")] == []
    # The restore itself, run again, works.
    assert cli(data, "restore", tmp_path / "b.fbk", env=secret).returncode == 0
    assert store_counts(data / "faces.db") == {"Barack Obama": 1, "Joe Biden": 1}


def test_a_killed_encrypted_backup_leaves_no_plaintext_copy(two_people: Path,
                                                            tmp_path: Path) -> None:
    """Item 6: `backup --encrypt` first copied the whole store in plaintext to
    $TMPDIR/tmpXXXX/faces.db (0644); a kill left it there. The copy is made in the data
    directory (owner-only, like the store) and cleared on the next run."""
    data = tmp_path / "data"
    shutil.copytree(two_people, data)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {"FACEREC_PASSPHRASE": "pass phrase", "TMPDIR": str(tmp)}
    # Killed right after the snapshot is made (the 2nd connect: the store, then its copy).
    killed(data, ("", 2, "next-open"), "backup", "--encrypt", tmp_path / "b.fbk", env=env)
    assert [p for p in tmp.rglob("*")] == []
    left = [p for p in data.iterdir() if p.name.startswith(".backup-")]
    assert left and all(p.stat().st_mode & 0o077 == 0 for p in left)
    assert not (tmp_path / "b.fbk").exists()
    assert cli(data, "people").returncode == 0
    assert [p.name for p in data.iterdir() if p.name.startswith(".backup-")] == []


_OPEN_AND_ADD = """
import sys, time
import numpy as np
from app.pipeline.storage.store import FaceStore, NewFace
path, name, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < go:
    pass
with FaceStore(path) as store:
    store.add_faces(name, [NewFace(np.ones(512, dtype=np.float32))])
"""


def test_processes_creating_the_same_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Regression: switching a new file to WAL returns "database is locked" at once, without
    # waiting, when another process has it open; CI lost an enroll to it.
    for round_ in range(12):
        db = tmp_path / f"r{round_}" / "faces.db"
        go = time.time() + 0.6  # all four processes start their open in the same millisecond
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_ADD, str(db), f"P{k}", str(go)],
                                  stderr=subprocess.PIPE, text=True) for k in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        assert store_counts(db) == {f"P{k}": 1 for k in range(4)}
