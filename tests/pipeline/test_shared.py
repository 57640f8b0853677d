"""One gallery for many workstations: PostgreSQL + pgvector, on a real server.

Workstations are real ``facerec`` processes (or `SharedStore` objects, each with its own
data directory) on one database of the test server (tests/pgserver.py). Tests that stop
the server use a private one. Timing targets (enroll on A -> named on B within 2 s) are
measured by ``facerec bench --store``; here only behaviour is asserted.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.pipeline.errors import PersonError
from app.pipeline.recognition.align import EMBEDDING_VERSION
from app.pipeline.recognition.index import FaceIndex
from app.pipeline.storage.outdated import current_gallery
from app.pipeline.storage.pgstore import PostgresStore, StoreOfflineError, Vector
from app.pipeline.storage.shared import SharedStore
from app.pipeline.storage.store import FaceStore, NewFace, Sighting
from app.pipeline.tools.facespace import load_face_space
from tests.conftest import DEEPFACE, FR, REPO

WAIT_S = 60.0  # generous upper bounds: the tests return as soon as things happen


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def faces(rng: np.random.Generator, n: int) -> list[NewFace]:
    return [NewFace(unit(rng.standard_normal(512)), b"jpeg", "x.jpg", EMBEDDING_VERSION) for _ in range(n)]


def wait_for(check, what: str, timeout: float = WAIT_S):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cli(home: Path, *args: object, store: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A facerec process of its own (a workstation)."""
    cmd = [sys.executable, "-m", "app", *(["--store", store] if store else []), *map(str, args)]
    # Not marked as a test run: the process keeps its log file, as a workstation does.
    base = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**base, "FACEREC_HOME": str(home), **(env or {})})


class Watch:
    """A running ``facerec watch --json``: frames and stderr lines as they come."""

    def __init__(self, home: Path, store: str, video: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--store", store, "watch", str(video), "--json", "--log"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "FACEREC_HOME": str(home)})
        self.frames: list[dict] = []
        self.errors: list[str] = []
        self._q: queue.Queue[tuple[str, str | None]] = queue.Queue()
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream) -> None:  # noqa: ANN001
        for line in stream:
            self._q.put((name, line))
        self._q.put((name, None))

    def _drain(self) -> None:
        while True:
            try:
                name, line = self._q.get_nowait()
            except queue.Empty:
                return
            if line is None:
                continue
            if name == "out":
                self.frames.append(json.loads(line))
            else:
                self.errors.append(line.rstrip())

    def until(self, check, what: str):  # noqa: ANN001, ANN201
        def step():  # noqa: ANN202
            self._drain()
            if self.proc.poll() is not None:
                time.sleep(0.2)
                self._drain()
                if not check():
                    raise AssertionError(f"watch ended ({self.proc.returncode}) before {what}:\n"
                                         + "\n".join(self.errors[-20:]))
            return check()
        return wait_for(step, what)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def names(self, start: int = 0) -> list[str | None]:
        return [f["faces"][0]["name"] if f["faces"] else "-" for f in self.frames[start:]]

    def finish(self) -> int:
        code = self.proc.wait(timeout=300)
        time.sleep(0.2)
        self._drain()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        w.kill()


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Obama, then Biden, then a stranger, 100 frames each (long enough to act during it)."""
    from tests.video import write_slideshow

    path = tmp_path_factory.mktemp("video") / "long.avi"
    return write_slideshow(path, [FR / "obama3.jpg", FR / "biden.jpg", DEEPFACE / "img3.jpg"],
                           frames_each=100)


@pytest.fixture(scope="module")
def biden_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Obama for 40 frames, then Biden for 260."""
    import cv2

    from tests.video import write_slideshow

    folder = tmp_path_factory.mktemp("video")
    obama = write_slideshow(folder / "obama.avi", [FR / "obama3.jpg"], frames_each=40)
    biden = write_slideshow(folder / "biden.avi", [FR / "biden.jpg"], frames_each=260)
    out = folder / "obama-then-biden.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (640, 480))
    for part in (obama, biden):
        cap = cv2.VideoCapture(str(part))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            writer.write(frame)
        cap.release()
    writer.release()
    return out


# -- two workstations --------------------------------------------------------------------

def test_enrolled_on_one_workstation_is_named_on_another(pg_url: str, tmp_path: Path,
                                                         biden_video: Path, watches: list[Watch]) -> None:
    """Workstation B watches a camera; Biden is enrolled on workstation A meanwhile; B names
    him from then on, without a restart (LISTEN/NOTIFY into B's mirror, then its index)."""
    assert cli(tmp_path / "a", "enroll", "Obama", FR / "obama.jpg", store=pg_url).returncode == 0
    b = Watch(tmp_path / "b", pg_url, biden_video)
    watches.append(b)
    b.until(lambda: len(b.frames) > 50, "Biden on screen")
    b.pause()  # B stays still while A enrolls, so the clip cannot end first
    assert b.names(40).count("Joe Biden") == 0 and b.names(45).count(None) >= 3
    done = cli(tmp_path / "a", "enroll", "Joe Biden", FR / "biden.jpg", store=pg_url)
    assert done.returncode == 0, done.stderr
    resumed_at = len(b.frames)
    b.resume()
    b.until(lambda: "Joe Biden" in b.names(resumed_at), "B to name Joe Biden")
    assert b.names()[:40].count("Obama") >= 36  # B knew Obama from the start
    b.proc.send_signal(signal.SIGINT)
    assert b.finish() == 0


def test_two_workstations_enrolling_one_name_at_once_make_one_person(pg_url: str) -> None:
    rng = np.random.default_rng(3)
    for round_ in range(5):
        name = f"Ada {round_}"
        stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
        gate = threading.Barrier(2)
        errors: list[BaseException] = []

        def enroll(store: PostgresStore, spelling: str, gate: threading.Barrier,
                   errors: list[BaseException]) -> None:
            gate.wait()
            try:
                store.add_faces(spelling, faces(rng, 1))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=enroll, args=(s, spelling, gate, errors))
                   for s, spelling in zip(stores, (name.upper(), name))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        person = stores[0].person(name)
        assert person is not None and person.face_count == 2
        assert [p.name for p in stores[1].people()].count(person.name) == 1
        for s in stores:
            s.close()
    # With "must be new", exactly one of the two wins and the other is told why.
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    gate = threading.Barrier(2)
    outcomes: list[str] = []

    def enroll_new(store: PostgresStore) -> None:
        gate.wait()
        try:
            store.add_faces("Grace", faces(rng, 1), must_be_new=True)
            outcomes.append("ok")
        except PersonError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=enroll_new, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "ok" and "already enrolled" in sorted(outcomes)[0]
    a.close()
    b.close()


# -- faults ----------------------------------------------------------------------------

def test_database_stopped_and_restarted_under_a_running_watch(private_server, tmp_path: Path,
                                                              long_video: Path,
                                                              watches: list[Watch]) -> None:
    """Recognition goes on from the local copy while the database is down; the log rows
    made meanwhile are queued and reach the database once, none lost, none twice."""
    url = private_server.url("gallery")
    people = tmp_path / "people"
    for name, photo in (("Obama", FR / "obama.jpg"), ("Joe Biden", FR / "biden.jpg")):
        (people / name).mkdir(parents=True)
        (people / name / photo.name).symlink_to(photo)
    assert cli(tmp_path / "desk", "import", people, store=url).returncode == 0

    w = Watch(tmp_path / "door", url, long_video)
    watches.append(w)
    w.until(lambda: len(w.frames) > 20, "the first frames")
    w.pause()
    private_server.stop()
    w.resume()
    def note(text: str) -> str | None:
        return next((e for e in w.errors if e.startswith("note:") and text in e), None)

    w.until(lambda: note("offline since"), "the offline note")
    went_down = int(note("offline since").rsplit("frame ", 1)[1].rstrip(")"))
    w.until(lambda: len(w.frames) > went_down + 40, "frames while the database is down")
    w.pause()
    offline_names = w.names(went_down)
    private_server.start()
    w.resume()
    assert w.finish() == 0, "\n".join(w.errors)
    came_back = int(note("back online").rsplit("frame ", 1)[1].rstrip(")"))
    assert came_back > went_down + 40
    # Recognition went on, named, from the local copy.
    assert {"Obama", "Joe Biden"} & set(offline_names)
    assert [f["frame"] for f in w.frames] == list(range(300))
    recorded = int(next(e for e in w.errors if e.startswith("recognition log:")).split()[2])
    assert recorded >= 3  # Obama, Biden and the stranger, at least
    with PostgresStore(url) as pg:
        rows = pg.sightings(10_000)
    assert len(rows) == recorded == len({r.id for r in rows})  # none lost, none twice
    shown = cli(tmp_path / "desk", "log", "--json", "--limit", "1000", store=url)
    assert sorted(r["id"] for r in json.loads(shown.stdout)) == sorted(r.id for r in rows)
    assert {r.name for r in rows} >= {"Obama", "Joe Biden", None}
    assert any(r.started < r.last_seen for r in rows)
    mirror = next((tmp_path / "door" / "shared").glob("*.db"))
    with FaceStore(mirror) as local:
        assert local.sightings() == []  # nothing left in the queue


def test_a_workstation_restarted_while_the_database_is_down(private_server, tmp_path: Path) -> None:
    """It starts from its own copy, refuses changes clearly, queues the log durably and
    sends it exactly once when the database returns."""
    url = private_server.url("gallery")
    rng = np.random.default_rng(9)
    home = tmp_path / "ws"
    with SharedStore(url, home) as ws:
        ada, _ = ws.add_faces("Ada", faces(rng, 3))
        assert [p.name for p in ws.people()] == ["Ada"]
        gallery = ws.gallery()
    private_server.stop()

    ws = SharedStore(url, home)  # a restart with the database away
    try:
        assert ws.offline_since is not None
        assert [(p.name, p.face_count) for p in ws.people()] == [("Ada", 3)]
        assert np.array_equal(ws.gallery().embeddings, gallery.embeddings)
        gen = ws.generation
        with pytest.raises(StoreOfflineError, match="offline since .*nothing was saved"):
            ws.add_faces("Bob", faces(rng, 1))
        with pytest.raises(StoreOfflineError):
            ws.rename("Ada", "Ada King")
        assert ws.generation == gen and ws.person("Bob") is None
        rows = [Sighting(str(uuid.uuid4()), ada, 100.0 + k, 101.0 + k, 5, 0.8, "cam", k, "ws")
                for k in range(4)]
        assert ws.record_sightings(rows) == 4
        # The database-search stand-in answers from the local copy while it is away.
        from app.pipeline.storage.shared import RemoteIndex

        remote = RemoteIndex(ws)
        assert remote.match(gallery.embeddings[:1])[0].name == "Ada"
    finally:
        ws.close()
    assert ws.left_queued == 4

    private_server.start()
    with SharedStore(url, home) as ws:
        wait_for(lambda: ws.queued_sightings == 0, "the queue to drain")
        assert ws.record_sightings(rows[:2]) == 2  # sent again (a retried flush): no duplicates
        wait_for(lambda: ws.queued_sightings == 0, "the queue to drain again")
        stored = ws.sightings()
    assert sorted(r.id for r in stored) == sorted(r.id for r in rows)
    assert {r.name for r in stored} == {"Ada"}


# -- roles and credentials ----------------------------------------------------------------

def test_recognising_and_enrolling_roles(pg_server, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Set up by the owner; the enrolling role (password in the URL) enrolls; the
    recognising role (password from a passfile) recognises, logs, and may not enroll.
    No password is ever printed or logged."""
    pg_server.execute("CREATE DATABASE roles_db")
    owner = pg_server.url("roles_db")
    assert main(["--data-dir", str(tmp_path / "admin"), "--store", owner, "setup"]) == 0
    out = capsys.readouterr().out
    assert "created role facerec_recognizer" in out and "created role facerec_enroller" in out
    pg_server.execute("CREATE ROLE desk LOGIN PASSWORD 'desk-Secret-1' IN ROLE facerec_enroller")
    pg_server.execute("CREATE ROLE door LOGIN PASSWORD 'door-Secret-2' IN ROLE facerec_recognizer")

    desk = pg_server.tcp_url("roles_db", "desk", "desk-Secret-1")
    done = cli(tmp_path / "desk", "enroll", "Obama", FR / "obama.jpg", store=desk)
    assert done.returncode == 0, done.stderr
    assert "desk:***@" in done.stderr and "desk-Secret-1" not in done.stderr + done.stdout
    logs = "".join(p.read_text() for p in (tmp_path / "desk" / "logs").glob("*"))
    assert "desk-Secret-1" not in logs and "***" in logs

    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_server.port}:roles_db:door:door-Secret-2\n")
    passfile.chmod(0o600)
    door = pg_server.tcp_url("roles_db", "door")
    env = {"PGPASSFILE": str(passfile)}
    seen = cli(tmp_path / "door", "identify", "--json", FR / "obama2.jpg", store=door, env=env)
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout)[0]["faces"][0]["name"] == "Obama"
    refused = cli(tmp_path / "door", "enroll", "Joe Biden", FR / "biden.jpg", store=door, env=env)
    assert refused.returncode == 1
    assert "may only recognise" in refused.stderr and "facerec_enroller" in refused.stderr
    assert "Traceback" not in refused.stderr
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert main(["--data-dir", str(tmp_path / "door"), "--store", door, "remove", "Obama"]) == 1
    assert "may only recognise" in capsys.readouterr().err
    # The recognising role appends to the log.
    with SharedStore(door.replace("door@", "door:door-Secret-2@"), tmp_path / "door2") as ws:
        assert not ws.can_enroll
        ws.record_sightings([Sighting(str(uuid.uuid4()), ws.person("Obama").id, 1.0, 2.0, 3, 0.9)])
        wait_for(lambda: ws.queued_sightings == 0, "the log row to be sent")
    with PostgresStore(owner) as pg:
        assert [(p.name, p.face_count) for p in pg.people()] == [("Obama", 1)]
        assert [r.name for r in pg.sightings()] == ["Obama"]
    # A service file names the server, the database and the role; the passfile has the secret.
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[facerec]\nhost=127.0.0.1\nport={pg_server.port}\ndbname=roles_db\n"
                        "user=door\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    code = main(["--data-dir", str(tmp_path / "door3"), "--store", "postgresql:///?service=facerec",
                 "people"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.split() == ["Obama", "1", "face(s)"] and "door-Secret-2" not in out + err


# -- moving in and out ---------------------------------------------------------------------

def test_migrate_to_and_from_a_shared_gallery(pg_url: str, tmp_path: Path, capsys) -> None:
    local = tmp_path / "local"
    rng = np.random.default_rng(4)
    with FaceStore(local / "faces.db") as store:
        obama, _ = store.add_faces("Obama", faces(rng, 2))
        store.add_faces("Joe Biden", faces(rng, 1))
        store.record_sightings([Sighting("row-1", obama, 5.0, 9.0, 12, 0.8, "cam")])

    def migrate(data: Path, *args: str) -> str:
        code = main(["--data-dir", str(data), "migrate", *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    out = migrate(local, "--to", pg_url)
    assert "2 people and 3 face(s) added, 0 already there, 1 log row(s)" in out
    assert "holds 2 people and 3 face(s)" in out
    out = migrate(local, "--to", pg_url)  # again: nothing new
    assert "0 people and 0 face(s) added, 3 already there" in out
    with PostgresStore(pg_url) as pg:
        assert [(p.name, p.face_count) for p in pg.people()] == [("Joe Biden", 1), ("Obama", 2)]
        assert [r.id for r in pg.sightings()] == ["row-1"]
        pg.add_faces("Ada", faces(rng, 2))

    back = tmp_path / "back"
    out = migrate(back, "--from", pg_url)
    assert "3 people and 5 face(s) added" in out
    assert "0 people and 0 face(s) added, 5 already there" in migrate(back, "--from", pg_url)
    with FaceStore(back / "faces.db") as store:
        assert [(p.name, p.face_count) for p in store.people()] == [
            ("Ada", 2), ("Joe Biden", 1), ("Obama", 2)]
        assert [r.name for r in store.sightings()] == ["Obama"]
    code = main(["--data-dir", str(tmp_path / "none"), "migrate", "--to", pg_url])
    assert code == 1 and "nothing to copy" in capsys.readouterr().err


def test_backup_and_restore_of_a_shared_gallery(pg_server, pg_url: str, tmp_path: Path,
                                                capsys) -> None:
    rng = np.random.default_rng(6)
    with PostgresStore(pg_url) as pg:
        pg.add_faces("Ada", faces(rng, 2))
        pg.add_faces("Bob", faces(rng, 1))
        before = pg.gallery()
    home = tmp_path / "ws"
    assert main(["--data-dir", str(home), "--store", pg_url, "backup", str(tmp_path / "g.frb")]) == 0
    pg_server.execute("CREATE DATABASE restored")
    other = pg_server.url("restored")
    with PostgresStore(other) as pg:
        pg.add_faces("Zed", faces(rng, 1))
    with SharedStore(other, tmp_path / "watcher") as watcher:
        args = ["--data-dir", str(home), "--store", other, "restore", str(tmp_path / "g.frb")]
        assert main(args) == 1 and "--replace" in capsys.readouterr().err
        assert main([*args, "--replace"]) == 0
        assert "restored 2 people" in capsys.readouterr().out
        # A running workstation's copy follows the restore (in full: its history was reset).
        wait_for(lambda: [p.name for p in watcher.mirror.people()] == ["Ada", "Bob"], "the mirror")
        after = watcher.gallery()
    assert np.array_equal(np.sort(after.embeddings, axis=0), np.sort(before.embeddings, axis=0))


# -- search in the database -----------------------------------------------------------------

@pytest.mark.parametrize("kind", [None, "vector", "bq"])
def test_search_in_the_database_follows_the_per_person_rule(pg_url: str, kind: str | None) -> None:
    """pgvector's HNSW plus the rule in SQL gives the local exact index's answers, whatever
    the index is built on (None: the schema's own, halfvec)."""
    rng = np.random.default_rng(12)
    centres = unit(rng.standard_normal((40, 512)))
    with PostgresStore(pg_url) as pg:
        pg.add_many([(f"P{k}", [NewFace(unit(c + 0.8 * unit(rng.standard_normal(512))),
                                        embedder=EMBEDDING_VERSION)
                                for _ in range(1 + k % 9)]) for k, c in enumerate(centres)])
        if kind is not None:
            pg.rebuild_vector_index(kind=kind, memory="64MB")
        with PostgresStore(pg_url) as fresh:  # another connection finds the index kind
            assert fresh.index_kind() == (kind or "halfvec")
            # ...and its query can use that index (not a scan that merely gives the same answer).
            fresh._conn.execute("SET enable_seqscan = off")
            plan = fresh._conn.execute("EXPLAIN " + fresh._match_sql(kind or "halfvec"),
                                       {"q": Vector(centres[0]), "v": EMBEDDING_VERSION}).fetchall()
            assert "faces_embedding" in " ".join(r[0] for r in plan)
        probes = unit(centres[rng.integers(0, 40, 60)] + 0.8 * unit(rng.standard_normal((60, 512))))
        # A face an older embedding version made takes no part, even as an exact copy.
        pg.add_faces("Old", [NewFace(probes[0], embedder="older-version")])
        gallery = current_gallery(pg)
        assert len(gallery.face_ids) == pg.face_count() - 1
        probes[-1] = gallery.embeddings[0]  # a stored face itself
        in_db = pg.match(probes, gallery.names)
    local = FaceIndex(gallery, None, "exact").match(probes)
    assert "Old" not in [m.name for m in in_db]
    assert [m.person_id for m in in_db] == [m.person_id for m in local]
    assert [m.name for m in in_db] == [m.name for m in local]
    assert np.allclose([m.similarity for m in in_db], [m.similarity for m in local], atol=1e-5)
    assert np.allclose([m.runner_up for m in in_db], [m.runner_up for m in local], atol=1e-5)


def test_older_version_faces_nearest_the_probe_do_not_crowd_out_the_candidates(pg_url: str) -> None:
    """The index scan goes on past faces of another embedding version (pgvector's
    iterative scan), so a person's current faces are still found behind 200 nearer
    outdated ones, even with a search breadth of 40."""
    rng = np.random.default_rng(13)
    centres = unit(rng.standard_normal((5, 512)))
    with PostgresStore(pg_url) as pg:
        pg.add_many([(f"P{k}", [NewFace(unit(c + 0.8 * unit(rng.standard_normal(512))),
                                        embedder=EMBEDDING_VERSION) for _ in range(3)])
                     for k, c in enumerate(centres)])
        pg.add_faces("Old", [NewFace(unit(centres[0] + 0.2 * unit(rng.standard_normal(512))),
                                     embedder="older-version") for _ in range(200)])
        gallery = current_gallery(pg)
        pg._conn.execute("SET enable_seqscan = off")  # the index, not an exact scan, on 215 rows
        [found] = pg.match(centres[:1], gallery.names, ef=40)
    assert found.name == "P0"
    assert np.isclose(found.similarity, FaceIndex(gallery, None, "exact").match(centres[:1])[0].similarity,
                      atol=1e-5)


def test_a_large_shared_gallery_is_searched_in_the_database(pg_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import Paths
    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.storage import shared

    monkeypatch.setattr(shared, "DB_SEARCH_ABOVE", 1)
    with Recognizer.open(Paths(tmp_path / "ws"), store=pg_url) as rec:
        rec.enroll("Obama", [rec.prepare_file(FR / "obama.jpg").face,
                             rec.prepare_file(FR / "obama2.jpg").face])
        rec.reload()
        assert isinstance(rec.index, shared.RemoteIndex)
        from app.pipeline.imageio import load_image

        assert [f.name for f in rec.process(load_image(FR / "obama3.jpg")).faces] == ["Obama"]
        assert [f.name for f in rec.process(load_image(FR / "biden.jpg")).faces] == [None]
        rec.rename("Obama", "Barack Obama")
        assert [f.name for f in rec.process(load_image(FR / "obama3.jpg")).faces] == ["Barack Obama"]


# -- the workstation's copy: vectors in a flat file ---------------------------------------------

def _copy_files(home: Path) -> list[Path]:
    return sorted((home / "shared").glob("*.vec*"))


def _same_gallery(a, b) -> None:  # noqa: ANN001
    order_a, order_b = np.argsort(a.face_ids), np.argsort(b.face_ids)
    assert np.array_equal(a.face_ids[order_a], b.face_ids[order_b])
    assert np.array_equal(a.person_ids[order_a], b.person_ids[order_b])
    assert np.array_equal(a.embeddings[order_a], b.embeddings[order_b])
    assert a.names == b.names


def test_a_fresh_copy_keeps_its_vectors_in_one_file_and_follows_changes(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workstation's first copy writes the vectors to a flat file (its SQLite rows hold
    none); later changes arrive incrementally; a removed face's vector is zeroed on disk."""
    from app.pipeline.storage.vectorfile import VectorFile

    # The binary COPY is parsed in blocks: small ones here, so rows straddle them.
    monkeypatch.setattr(PostgresStore, "_COPY_BLOCK", 5000)
    rng = np.random.default_rng(21)
    with PostgresStore(pg_url) as pg:
        pg.add_many([(f"P{k}", faces(rng, 1 + k % 4)) for k in range(30)])
        home = tmp_path / "ws"
        with SharedStore(url := pg_url, home, background=False) as ws:
            ws.sync()
            _same_gallery(ws.gallery(), pg.gallery())
            [vec_file] = _copy_files(home)
            assert vec_file.suffix == ".vec" and vec_file.stat().st_mode & 0o077 == 0
            stored = ws.mirror._read("SELECT count(*), sum(length(embedding)) FROM faces")[0]
            assert stored == (73, 0)  # every vector is in the file, none in SQLite
            assert [(f.source, f.embedder) for f in ws.mirror.faces_of(ws.mirror.person("P3").id)] \
                == [("x.jpg", EMBEDDING_VERSION)] * 4

            gone = pg.person("P5")
            gone_faces = [f.id for f in pg.faces_of(gone.id)]
            pg.remove("P5")
            pg.add_faces("P7", faces(rng, 1))
            moved = pg.faces_of(pg.person("P9").id)[0].id
            pg.move_faces([moved], "P10")
            ws.sync()
            _same_gallery(ws.gallery(), pg.gallery())
            assert _copy_files(home) == [vec_file]  # no new copy: only the changes came
            assert ws.mirror._read("SELECT count(*) FROM faces WHERE length(embedding) > 0")[0][0] == 1
            on_disk = VectorFile(vec_file)
            rows = on_disk.rows_of(np.array(gone_faces))
            assert (rows >= 0).all() and not on_disk.vectors[rows].any()  # overwritten
            assert on_disk.vectors[on_disk.rows_of(np.array([moved]))].any()  # still there
    # A new copy of the same gallery (another workstation) matches, removed faces and all.
    with SharedStore(url, tmp_path / "ws2", background=False) as other, PostgresStore(url) as pg:
        other.sync()
        _same_gallery(other.gallery(), pg.gallery())


def test_a_copy_cut_short_is_never_used(pg_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full copy that fails part-way leaves the previous copy in use, untouched, and no
    partial file; files a killed process left behind are removed by the next copy."""
    from app.pipeline.storage import vectorfile

    rng = np.random.default_rng(22)
    home = tmp_path / "ws"
    with PostgresStore(pg_url) as pg:
        pg.add_many([(f"P{k}", faces(rng, 2)) for k in range(20)])
        with SharedStore(pg_url, home, background=False) as ws:
            ws.sync()
            before = ws.gallery()
            [first] = _copy_files(home)
            # A restore resets the history: every workstation copies the gallery in full.
            dump = pg.dump()
            dump = type(dump)(dump.people[:10], [f for f in dump.faces if f[1] <= dump.people[9][0]],
                              [], dump.generation)
            pg.replace_with(dump, replace=True)

            calls = []
            real_append = vectorfile.VectorWriter.append

            def failing(self, ids, vectors):  # noqa: ANN001, ANN202
                calls.append(len(ids))
                real_append(self, ids[:1], vectors[:1])  # part of the block reached the disk
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(vectorfile.VectorWriter, "append", failing)
            with pytest.raises(OSError, match="No space"):
                ws.sync()
            assert calls and _copy_files(home) == [first]  # the partial file is gone
            _same_gallery(ws.gallery(), before)  # and the old copy still serves

            # A killed process's unfinished file and an orphaned finished one.
            stem = ws.mirror_path.stem
            (home / "shared" / f"{stem}.deadbeef0000.vec.999999999.part").write_bytes(b"\0" * 100)
            (home / "shared" / f"{stem}.cafe00000000.vec").write_bytes(b"\0" * 100)
            monkeypatch.setattr(vectorfile.VectorWriter, "append", real_append)
            ws.sync()
            _same_gallery(ws.gallery(), pg.gallery())
            [second] = _copy_files(home)
            assert second != first and len(ws.gallery().face_ids) == 20


def test_a_workstation_restarted_offline_recognises_from_its_vector_file(
        private_server, tmp_path: Path) -> None:
    """The copy made in bulk survives a restart with the database away and serves the
    exact search stand-in (the database-search path's fallback)."""
    from app.pipeline.storage.shared import RemoteIndex

    url = private_server.url("gallery")
    rng = np.random.default_rng(23)
    centres = unit(rng.standard_normal((12, 512)))
    with PostgresStore(url) as pg:
        pg.add_many([(f"P{k}", [NewFace(unit(c + 0.5 * unit(rng.standard_normal(512))),
                                        embedder=EMBEDDING_VERSION)
                                for _ in range(3)]) for k, c in enumerate(centres)])
        truth = pg.gallery()
    home = tmp_path / "ws"
    with SharedStore(url, home):
        pass
    assert len(_copy_files(home)) == 1
    private_server.stop()
    with SharedStore(url, home) as ws:
        assert ws.offline_since is not None
        _same_gallery(ws.gallery(), truth)
        found = RemoteIndex(ws).match(centres)
        assert [m.name for m in found] == [f"P{k}" for k in range(12)]


def test_bench_of_a_shared_gallery(pg_url: str, tmp_path: Path) -> None:
    """``facerec bench --store``: every part runs on a small synthetic gallery; the index's
    answers agree with the exact rule; the copy is made through the vector file. (The
    speed figures themselves belong to BENCHMARKS.md, not to a test.)"""
    out = cli(tmp_path, "bench", "--sizes", "1000", "--json", store=pg_url)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["generator"], r["index"], r["face_space"]["embedding_version"]) == \
        ("faces", "halfvec", load_face_space().embedding_version)
    [size] = r["sizes"]
    search, sync = size["search"], size["sync"]
    assert size["faces"] == 1000 and not size["reused"] and search["index"] == "halfvec"
    assert search["accuracy_vs_exact"] == 1.0 and search["exact_vs_identity"] > 0.95
    assert [e["ef_search"] for e in search["sweep"]] == [40, 100, 200, 400]
    assert search["ef_search"] == 100  # the breadth a workstation uses at this size
    assert sync["index"] == "FaceIndex" and sync["vectors_mb"] > 1.5  # 1000 x 2 KB in the file
    assert size["propagation"]["rounds"] == 10
    # Run again on the same database: the gallery it made is kept, with its figures.
    again = cli(tmp_path, "bench", "--sizes", "1000", "--json", store=pg_url)
    assert again.returncode == 0, again.stderr
    kept = json.loads(again.stdout)["sizes"][0]
    assert kept["reused"] is True and kept["build_s"] == size["build_s"]
    assert kept["search"]["accuracy_vs_exact"] == 1.0
