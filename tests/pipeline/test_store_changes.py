"""Store schema 2: per-face management, incremental sync of the index, the recognition log."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.errors import PersonError
from app.pipeline.recognition.index import FaceIndex
from app.pipeline.storage.backup import restore_backup, write_backup
from app.pipeline.storage.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    FaceStore,
    NewFace,
    Sighting,
    Store,
    open_store,
)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, data_dir: Path) -> Store:
    """The same tests against both engines: their semantics must match (conformance)."""
    if request.param == "sqlite":
        s = open_store(data_dir / "faces.db")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def faces(rng: np.random.Generator, n: int, source: str = "") -> list[NewFace]:
    return [NewFace(unit(rng.standard_normal(512)), b"jpeg", source, "test-1") for _ in range(n)]


def test_a_version_1_store_is_upgraded_in_place(data_dir: Path, rng: np.random.Generator) -> None:
    db = data_dir / "faces.db"
    data_dir.mkdir()
    con = sqlite3.connect(db)
    con.executescript(_MIGRATIONS[1])
    con.execute("INSERT INTO people(name, key, created) VALUES ('Ada', 'ada', 0)")
    con.execute("INSERT INTO faces(person_id, embedding, source, created) VALUES (1, ?, 'a.jpg', 0)",
                (unit(rng.standard_normal(512)).astype("<f4").tobytes(),))
    con.execute("UPDATE meta SET value = '7' WHERE key = 'generation'")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    with FaceStore(db) as store:
        assert store.generation == 7
        assert [(p.name, p.face_count) for p in store.people()] == [("Ada", 1)]
        (face,) = store.faces_of(store.person("Ada").id)
        assert (face.source, face.embedder) == ("a.jpg", "")  # made before versions were kept
        assert store.embedder_counts() == {"": 1}
        assert store.changes_since(6) is None  # history before the upgrade is not kept
        assert store.changes_since(7).empty
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    con.close()


def test_changes_since_reports_exactly_what_changed(store: Store, rng: np.random.Generator) -> None:
    ada, ada_faces = store.add_faces("Ada", faces(rng, 3))
    bob, bob_faces = store.add_faces("Bob", faces(rng, 2))
    g0 = store.generation

    assert store.changes_since(g0).empty
    store.rename("Ada", "Ada King")
    carl = store.move_faces([bob_faces[0]], "Carl")  # a new person
    store.remove_faces([ada_faces[1]])
    _, new = store.add_faces("Bob", faces(rng, 1))
    delta = store.changes_since(g0)

    assert delta.generation == store.generation == g0 + 4
    assert sorted(delta.faces.face_ids.tolist()) == sorted([bob_faces[0], *new])
    moved = dict(zip(delta.faces.face_ids.tolist(), delta.faces.person_ids.tolist()))
    assert moved == {bob_faces[0]: carl.id, new[0]: bob}
    assert delta.faces.names == {ada: "Ada King", carl.id: "Carl", bob: "Bob"}
    assert delta.removed_faces.tolist() == [ada_faces[1]]
    assert delta.removed_people == []

    g1 = store.generation
    store.remove("Carl")
    delta = store.changes_since(g1)
    assert delta.removed_people == [carl.id] and delta.removed_faces.tolist() == [bob_faces[0]]
    assert store.changes_since(store.generation + 1) is None  # a cache from another store


def test_per_face_remove_and_move_are_checked_and_atomic(store: Store,
                                                         rng: np.random.Generator) -> None:
    ada, ids = store.add_faces("Ada", faces(rng, 2, "ada.jpg"))
    gen = store.generation
    with pytest.raises(PersonError, match="no face with id 999"):
        store.remove_faces([ids[0], 999])
    with pytest.raises(PersonError, match="no person named 'Zed'"):
        store.move_faces([ids[0]], "Zed", create=False)
    assert store.generation == gen and len(store.faces_of(ada)) == 2  # nothing changed

    zed = store.move_faces([ids[0]], "Zed")
    assert (zed.name, zed.face_count) == ("Zed", 1)
    assert [f.id for f in store.faces_of(ada)] == [ids[1]]
    assert store.face(ids[0]).person_id == zed.id and store.face(ids[0]).source == "ada.jpg"
    store.remove_faces([ids[1]])
    assert store.person("Ada").face_count == 0  # a person with no faces stays
    assert store.face(ids[1]) is None


def test_index_kept_in_sync_by_changes_equals_a_rebuilt_one(store: Store,
                                                            rng: np.random.Generator) -> None:
    """Random adds, moves, removals and renames applied as deltas give exactly the index
    a fresh build from the store gives: same ids, people, names and matches."""
    for mode in ("exact", "hnsw"):
        for k in range(6):
            store.add_faces(f"P{k}", faces(rng, 3))
        index = FaceIndex(store.gallery(), None, mode)
        for step in range(40):
            all_faces = store.gallery().face_ids.tolist()
            people = [p.name for p in store.people()]
            op = step % 5
            if op == 0:
                store.add_faces(people[rng.integers(len(people))], faces(rng, 2))
            elif op == 1 and all_faces:
                store.move_faces([int(rng.choice(all_faces))], f"P{rng.integers(9)}")
            elif op == 2 and len(all_faces) > 4:
                store.remove_faces([int(rng.choice(all_faces))])
            elif op == 3:
                old = people[rng.integers(len(people))]
                store.rename(old, f"R{step}") if step % 2 else store.remove(old)
            else:
                store.add_faces(f"New{step}", faces(rng, 1))
            if step % 3 == 0:
                index.apply(store.changes_since(index.generation))
        index.apply(store.changes_since(index.generation))
        fresh = FaceIndex(store.gallery(), None, mode)
        assert index.generation == fresh.generation
        assert index._ids.tolist() == fresh._ids.tolist()
        assert index._pids.tolist() == fresh._pids.tolist()
        assert {p: index.name_of(p) for p in fresh._names} == fresh._names
        probes = unit(store.gallery().embeddings[::3] + 0.3 * rng.standard_normal((1, 512)))
        assert index.match(probes) == fresh.match(probes)
        for p in store.people():
            store.remove(p.name)


def sighting(person_id: int | None, started: float, **kw: object) -> Sighting:
    base = dict(id=str(uuid.uuid4()), person_id=person_id, started=started, last_seen=started + 1,
                frames=10, similarity=0.8, source="camera 0", track=1, station="desk")
    base.update(kw)
    return Sighting(**base)  # type: ignore[arg-type]


def test_the_recognition_log_is_idempotent_and_follows_people(store: Store,
                                                              rng: np.random.Generator) -> None:
    ada, _ = store.add_faces("Ada", faces(rng, 1))
    bob, _ = store.add_faces("Bob", faces(rng, 1))
    gen = store.generation
    a = sighting(ada, 100.0)
    stranger = sighting(None, 105.0, track=7)
    assert store.record_sightings([a, stranger, sighting(bob, 110.0)]) == 3
    # Flushed again with a longer span (the appearance went on), and once more unchanged.
    longer = Sighting(**{**a.__dict__, "last_seen": 130.0, "frames": 50, "similarity": 0.9})
    store.record_sightings([longer])
    store.record_sightings([a])
    rows = store.sightings()
    assert [r.name for r in rows] == ["Bob", None, "Ada"]  # newest first, current names
    ada_row = rows[2]
    assert (ada_row.last_seen, ada_row.frames, ada_row.similarity) == (130.0, 50, 0.9)
    assert rows[1].track == 7 and rows[1].person_id is None
    assert store.generation == gen  # the log does not touch the gallery

    store.rename("Ada", "Ada King")
    assert store.sightings()[2].name == "Ada King"
    store.remove("Bob")
    assert [r.name for r in store.sightings()] == [None, "Ada King"]
    # A row queued for a person removed meanwhile is dropped, not stored nameless.
    assert store.record_sightings([sighting(bob, 200.0)]) == 0
    assert len(store.sightings()) == 2

    assert [r.name for r in store.sightings(since=120.0)] == ["Ada King"]
    assert store.clear_sightings(before=120.0) == 1  # the stranger's row ended at 106
    assert store.clear_sightings() == 1 and store.sightings() == []


def test_a_restored_backup_makes_caches_reload(tmp_path: Path, rng: np.random.Generator) -> None:
    src, dst = tmp_path / "a" / "faces.db", tmp_path / "b" / "faces.db"
    with FaceStore(src) as a:
        a.add_faces("Ada", faces(rng, 2))
    with FaceStore(dst) as b:
        for k in range(5):
            b.add_faces(f"B{k}", faces(rng, 1))
        old_gen = b.generation
    write_backup(src, tmp_path / "backup.frb")
    restore_backup(tmp_path / "backup.frb", dst, tmp_path / "b" / "faces.hnsw", replace=True)
    with FaceStore(dst) as b:
        assert b.generation > old_gen
        assert b.changes_since(old_gen) is None  # the whole gallery changed: reload
        assert [p.name for p in b.people()] == ["Ada"]


def test_face_corrections_reach_another_recognizer_incrementally(data_dir: Path) -> None:
    """A face enrolled under the wrong name is moved by one recognizer (the window); a
    second one on the same data directory (the CLI, another window) follows on refresh,
    through the changes alone, without reloading the gallery."""
    from app.config import Paths
    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.align import EMBEDDING_VERSION
    from app.pipeline.recognition.recognizer import Recognizer
    from tests.conftest import FR

    paths = Paths(data_dir)
    biden = load_image(FR / "biden.jpg")
    with Recognizer.open(paths) as a, Recognizer.open(paths) as b:
        a.enroll("Obama", [a.prepare_file(FR / "obama.jpg").face, a.prepare_file(FR / "biden.jpg").face])
        b.refresh()
        assert [f.name for f in b.process(biden).faces] == ["Obama"]  # the mistake shows

        wrong = [f for f in a.faces_of("Obama") if f.source == "biden.jpg"]
        assert [f.embedder for f in wrong] == [EMBEDDING_VERSION]
        joe = a.move_faces([wrong[0].id], "Joe Biden")
        assert (joe.name, joe.face_count) == ("Joe Biden", 1)
        assert [f.name for f in a.process(biden).faces] == ["Joe Biden"]

        index_before = b.index
        assert b.refresh()
        assert b.index is index_before  # caught up in place, not rebuilt from the store
        assert [f.name for f in b.process(biden).faces] == ["Joe Biden"]

        a.remove_faces([wrong[0].id])
        b.refresh()
        assert [f.name for f in b.process(biden).faces] == [None]
        assert [(p.name, p.face_count) for p in b.people()] == [("Joe Biden", 0), ("Obama", 1)]


def test_a_mirror_fed_raw_rows_holds_what_the_store_holds(store: Store, tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    """A workstation's mirror (SQLite) follows either engine through `rows_since` alone:
    adds, moves, renames (also swapped names) and removals; an index following the mirror
    matches a fresh one; a mirror of another store is reloaded whole."""
    mirror = FaceStore(tmp_path / "mirror.db")
    index = FaceIndex(mirror.gallery(), None, "exact")

    def follow() -> None:
        meta = mirror.mirror_meta()
        mirror.mirror_apply(store.rows_since(int(meta.get("upstream", 0)), meta.get("store_id", "")))
        delta = mirror.changes_since(index.generation)
        if delta is None:
            index.__init__(mirror.gallery(), None, "exact")
        else:
            index.apply(delta)

    for k in range(4):
        store.add_faces(f"P{k}", faces(rng, 2))
    follow()
    store.rename("P0", "Tmp")
    store.rename("P1", "P0")  # P1 takes P0's old name within one delta
    store.rename("Tmp", "P1")
    ids = store.gallery().face_ids.tolist()
    store.move_faces([ids[0]], "P3")
    store.remove_faces([ids[1]])
    store.remove("P2")
    store.add_faces("P4", faces(rng, 1))
    follow()
    for _ in range(2):  # a second pass changes nothing
        want, got = store.gallery(), mirror.gallery()
        assert got.face_ids.tolist() == want.face_ids.tolist()
        assert got.person_ids.tolist() == want.person_ids.tolist()
        assert np.array_equal(got.embeddings, want.embeddings) and got.names == want.names
        assert [(p.id, p.name, p.face_count) for p in mirror.people()] == [
            (p.id, p.name, p.face_count) for p in store.people()]
        fresh = FaceIndex(got, None, "exact")
        assert index._ids.tolist() == fresh._ids.tolist() and index._names == fresh._names
        assert not mirror.mirror_apply(store.rows_since(int(mirror.mirror_meta()["upstream"]),
                                                        mirror.mirror_meta()["store_id"]))
    # A mirror of another gallery at the same place is replaced whole, caches reloaded.
    with FaceStore(tmp_path / "other.db") as other:
        other.add_faces("Zed", faces(rng, 1))
        gen = mirror.generation
        delta = other.rows_since(0, "the store the mirror followed")
        assert delta.full
        mirror.mirror_apply(delta)
        assert [p.name for p in mirror.people()] == ["Zed"]
        assert mirror.changes_since(gen) is None
    mirror.close()


def test_a_damaged_embedding_is_quarantined_in_both_engines(store: Store, rng: np.random.Generator,
                                                           tmp_path: Path) -> None:
    """Issue 13 item 1: a vector that is not of unit length (a flipped exponent bit) is never searched."""
    pid, (damaged, sound) = store.add_faces("Ada", faces(rng, 2))
    with store._write(bump=False) as (con, _):
        con.execute("UPDATE faces SET embedding = ? WHERE id = ?",
                    (store._vec(3 * unit(rng.standard_normal(512))), damaged))
    assert store.gallery().face_ids.tolist() == [sound]
    assert [(f, p) for f, p, _ in store.damaged_faces()] == [(damaged, pid)]
    assert [f[0] for f in store.dump().faces] == [sound]
    assert store.people()[0].face_count == 2  # kept, for the user to see and remove
    # A workstation's first copy of the gallery (in bulk, into a vector file) skips it too.
    delta = store.rows_since(-1, "another store", bulk=(tmp_path, "copy"))
    try:
        assert delta.bulk.ids.tolist() == [sound]
    finally:
        delta.bulk.writer.discard()


def test_a_shared_gallery_of_schema_2_gets_the_new_name_keys(pg_url: str, rng: np.random.Generator) -> None:
    """Issue 13 item 4 in PostgreSQL: keys made by case folding ("strasse") are recomputed."""
    from app.pipeline.storage.pgstore import PostgresStore

    with PostgresStore(pg_url) as store:
        store.add_faces("Straße", faces(rng, 1))
        store.add_faces("Émile", faces(rng, 1))
        # As schema 2 stored them: case-folded keys.
        store._conn.execute("UPDATE people SET key = 'strasse' WHERE name = 'Straße'")
        store._conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    with PostgresStore(pg_url) as store:
        assert store.person("STRASSE") is None and store.person("STRAßE").name == "Straße"
        store.add_faces("STRASSE", faces(rng, 1))  # another family
        assert sorted((p.name, p.face_count) for p in store.people()) == [
            ("STRASSE", 1), ("Straße", 1), ("Émile", 1)]
        assert store._read("SELECT value FROM meta WHERE key = 'schema'") == [("3",)]
