"""The SQLite store and the HNSW index: persistence, rebuilds and the per-person rule."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.errors import PersonError
from app.pipeline.recognition.index import MEAN_FACE_WEIGHT, FaceIndex, faces_per_decision, person_score
from app.pipeline.storage.store import SCHEMA_VERSION, FaceStore, Gallery, NewFace, normalize_name


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_store_schema_wal_and_permissions(data_dir: Path, rng: np.random.Generator) -> None:
    store = FaceStore(data_dir / "faces.db")
    store.add_faces("Ada", [NewFace(rng.standard_normal(512), b"\xff\xd8jpeg", "a.jpg")])
    con = sqlite3.connect(data_dir / "faces.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert stat.S_IMODE((data_dir / "faces.db").stat().st_mode) == 0o600
    store.close()


def test_people_rename_remove_and_generation(data_dir: Path, rng: np.random.Generator) -> None:
    with FaceStore(data_dir / "faces.db") as store:
        g0 = store.generation
        pid, ids = store.add_faces("Ada Lovelace", [NewFace(rng.standard_normal(512))] * 3)
        assert len(ids) == 3 and store.generation == g0 + 1
        assert store.person("ada lovelace").face_count == 3  # case-insensitive
        with pytest.raises(PersonError, match="already enrolled"):
            store.add_faces("ADA LOVELACE", [NewFace(rng.standard_normal(512))], must_be_new=True)
        store.add_faces("Grace", [NewFace(rng.standard_normal(512))])
        with pytest.raises(PersonError, match="already enrolled"):
            store.rename("Grace", "ada lovelace")
        assert store.rename("Ada Lovelace", "Ada King").name == "Ada King"
        assert store.remove("Ada King") == ids
        assert [p.name for p in store.people()] == ["Grace"]
        with pytest.raises(PersonError, match="no person"):
            store.remove("Ada King")


@pytest.mark.parametrize("bad", ["", "   ", "a" * 65, "tab\there\x07"])
def test_invalid_names(bad: str) -> None:
    with pytest.raises(PersonError):
        normalize_name(bad)


def test_names_are_tidied() -> None:
    assert normalize_name("  Marie   Curie ") == "Marie Curie"


def test_failed_transaction_leaves_store_unchanged(data_dir: Path, rng: np.random.Generator) -> None:
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Ada", [NewFace(rng.standard_normal(512))])
        before = (store.generation, store.face_count())
        with pytest.raises(ValueError):  # the second embedding is malformed
            store.add_many([("Bob", [NewFace(rng.standard_normal(512))]),
                            ("Cy", [NewFace(np.zeros(512))])])
        assert (store.generation, store.face_count()) == before
        assert [p.name for p in store.people()] == ["Ada"]


def test_deleted_embeddings_leave_no_bytes_in_the_file(data_dir: Path, rng: np.random.Generator) -> None:
    db = data_dir / "faces.db"
    with FaceStore(db) as store:
        secret = unit(rng.standard_normal(512))
        thumb = b"THUMBNAIL-OF-EVE-" * 20
        store.add_faces("Eve", [NewFace(secret, thumb, "eve.jpg")])
        store.add_faces("Bob", [NewFace(rng.standard_normal(512))])
        store.remove("Eve")
    raw = db.read_bytes() + (db.with_name("faces.db-wal").read_bytes()
                              if db.with_name("faces.db-wal").exists() else b"")
    assert secret.astype("<f4").tobytes()[:64] not in raw
    assert b"THUMBNAIL-OF-EVE" not in raw


# -- index --------------------------------------------------------------------------

def clustered_gallery(rng: np.random.Generator, people: int, per: int, noise: float = 0.8,
                      generation: int = 1) -> tuple[Gallery, np.ndarray]:
    """*per* noisy samples around each of *people* random identity centres."""
    centres = unit(rng.standard_normal((people, 512)))
    pids = np.repeat(np.arange(1, people + 1), per)
    vecs = unit(centres[pids - 1] + noise * unit(rng.standard_normal((pids.size, 512))))
    names = {i: f"person{i}" for i in range(1, people + 1)}
    return Gallery(np.arange(1, pids.size + 1), pids, vecs, names, generation), centres


def test_hnsw_agrees_with_exact_search(tmp_path: Path, rng: np.random.Generator) -> None:
    gallery, centres = clustered_gallery(rng, people=1000, per=5)
    index = FaceIndex(gallery, tmp_path / "i.hnsw", search="hnsw")
    queries = unit(centres[:300] + 0.8 * unit(rng.standard_normal((300, 512))))
    rows_h, sims_h = index.candidates(queries)
    index.search_mode = "exact"
    rows_e, sims_e = index.candidates(queries)
    recall = float((rows_h[:, 0] == rows_e[:, 0]).mean())
    assert recall >= 0.99
    # Re-ranked with the exact vectors: where the same face is found, scores match.
    same = rows_h[:, 0] == rows_e[:, 0]
    assert np.allclose(sims_h[same, 0], sims_e[same, 0], atol=1e-5)


def test_index_persists_and_rebuilds_when_stale_or_corrupt(tmp_path: Path,
                                                             rng: np.random.Generator) -> None:
    gallery, centres = clustered_gallery(rng, people=50, per=3)
    path = tmp_path / "i.hnsw"
    first = FaceIndex(gallery, path, search="hnsw")
    expected = [m.person_id for m in first.match(centres)]
    meta = json.loads(path.with_name("i.hnsw.json").read_text())
    assert meta["generation"] == 1 and meta["count"] == 150

    mtime = path.stat().st_mtime_ns
    loaded = FaceIndex(gallery, path, search="hnsw")
    assert path.stat().st_mtime_ns == mtime  # loaded, not rebuilt and rewritten
    assert [m.person_id for m in loaded.match(centres)] == expected

    path.write_bytes(path.read_bytes()[:1000])  # truncated
    rebuilt = FaceIndex(gallery, path, search="hnsw")
    assert [m.person_id for m in rebuilt.match(centres)] == expected
    assert path.stat().st_size > 1000  # rewritten whole

    path.write_bytes(b"\x00garbage" * 500)  # overwritten with junk
    assert [m.person_id for m in FaceIndex(gallery, path, "hnsw").match(centres)] == expected

    path.unlink()  # missing
    assert [m.person_id for m in FaceIndex(gallery, path, "hnsw").match(centres)] == expected
    assert path.exists()

    stale = Gallery(gallery.face_ids[:-3], gallery.person_ids[:-3], gallery.embeddings[:-3],
                    gallery.names, generation=2)
    index = FaceIndex(stale, path, "hnsw")
    assert len(index) == 147 and index.match(centres[-1:])[0].person_id != 50


def test_faces_per_decision() -> None:
    assert [faces_per_decision(n) for n in (1, 2, 4, 5, 8, 9, 10, 40)] == [1, 1, 1, 2, 2, 3, 3, 5]


def test_person_score_mixes_the_best_faces_and_the_mean_face(rng: np.random.Generator) -> None:
    faces = unit(rng.standard_normal((3, 512)))
    probe = unit(faces[0] + 0.5 * unit(rng.standard_normal(512)))
    sims = faces @ probe
    # One face: its similarity. Several: half the best one (m = 1 up to 4 faces), half the
    # similarity to the normalised mean of the faces.
    assert person_score(sims[:1], 1.0) == pytest.approx(float(sims[0]))
    mean_face = float(unit(faces.mean(axis=0)) @ probe)
    got = person_score(sims, float(np.linalg.norm(faces.sum(axis=0))))
    assert got == pytest.approx(0.5 * mean_face + 0.5 * float(sims.max()), abs=1e-6)
    assert MEAN_FACE_WEIGHT == 0.5


def test_one_bad_photo_cannot_claim_a_stranger(rng: np.random.Generator) -> None:
    """Ann has 10 photos, one of which actually resembles a stranger: he stays off Ann."""
    ann, stranger = unit(rng.standard_normal(512)), unit(rng.standard_normal(512))
    good = unit(ann + 0.35 * unit(rng.standard_normal((9, 512))))
    bad = unit(stranger + 0.35 * unit(rng.standard_normal(512)))
    vecs = np.vstack([good, bad[None]])
    gallery = Gallery(np.arange(1, 11), np.ones(10, np.int64), vecs, {1: "Ann"}, 1)
    index = FaceIndex(gallery, None, "exact")
    probe = unit(stranger + 0.35 * unit(rng.standard_normal(512)))
    nearest_face_sim = float((vecs @ probe).max())
    match = index.match(probe[None])[0]
    assert nearest_face_sim > 0.7  # the nearest single face would have named him "Ann"
    assert match.similarity < 0.5  # the per-person score does not
    ann_probe = unit(ann + 0.35 * unit(rng.standard_normal(512)))
    assert index.match(ann_probe[None])[0].similarity > 0.7


def test_person_score_is_exact_in_a_large_gallery(rng: np.random.Generator) -> None:
    """With far more faces than the search returns, a person's score still uses all of
    their photos: one bad photo of six cannot lift a stranger over the threshold."""
    gallery, _ = clustered_gallery(rng, people=100, per=5)  # 500 other faces
    ann, stranger = unit(rng.standard_normal(512)), unit(rng.standard_normal(512))
    good = unit(ann + 0.35 * unit(rng.standard_normal((5, 512))))
    bad = unit(stranger + 0.35 * unit(rng.standard_normal(512)))
    pid = 1000
    g = Gallery(np.concatenate([gallery.face_ids, np.arange(10_001, 10_007)]),
                np.concatenate([gallery.person_ids, np.full(6, pid)]),
                np.vstack([gallery.embeddings, good, bad[None]]),
                {**gallery.names, pid: "Ann"}, 1)
    index = FaceIndex(g, None, "exact")
    probe = unit(stranger + 0.35 * unit(rng.standard_normal(512)))
    own = np.vstack([good, bad[None]])
    best_two = np.sort(own @ probe)[-2:].mean()  # m = 2 for 6 photos
    to_mean_face = float(unit(own.mean(axis=0)) @ probe)
    expected = MEAN_FACE_WEIGHT * to_mean_face + (1 - MEAN_FACE_WEIGHT) * best_two
    match = index.match(probe[None])[0]
    assert match.person_id == pid and abs(match.similarity - expected) < 1e-5
    assert match.similarity < 0.5


def test_names_are_case_insensitive_in_every_script(data_dir: Path, rng: np.random.Generator) -> None:
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Émile Zola", [NewFace(rng.standard_normal(512))])
        store.add_faces("émile zola", [NewFace(rng.standard_normal(512))])  # the same person
        assert [(p.name, p.face_count) for p in store.people()] == [("Émile Zola", 2)]
        with pytest.raises(PersonError, match="already enrolled"):
            store.add_faces("ÉMILE ZOLA", [NewFace(rng.standard_normal(512))], must_be_new=True)
        store.rename("émile zola", "Émile")
        assert store.person("ÉMILE").name == "Émile"


def test_person_ids_are_never_reused(data_dir: Path, rng: np.random.Generator) -> None:
    """A live track votes by person id: a deleted id must not come back as someone else."""
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Ann", [NewFace(rng.standard_normal(512))])
        bob, _ = store.add_faces("Bob", [NewFace(rng.standard_normal(512))])
        store.remove("Bob")
        carol, _ = store.add_faces("Carol", [NewFace(rng.standard_normal(512))])
        assert carol != bob


# -- issue 13: hostile and damaged stores and indexes ---------------------------------


def _blob(store_path: Path, face_id: int) -> bytes:
    con = sqlite3.connect(store_path)
    try:
        return bytes(con.execute("SELECT embedding FROM faces WHERE id = ?", (face_id,)).fetchone()[0])
    finally:
        con.close()


def _set_blob(store_path: Path, face_id: int, blob: bytes) -> None:
    con = sqlite3.connect(store_path)
    con.execute("UPDATE faces SET embedding = ? WHERE id = ?", (blob, face_id))
    con.commit()
    con.close()


def _with_crc(raw: bytes) -> bytes:
    import zlib

    return raw + zlib.crc32(raw).to_bytes(4, "little")


def test_damaged_embeddings_are_quarantined_not_searched(data_dir: Path, rng: np.random.Generator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    db = data_dir / "faces.db"
    with FaceStore(db) as store:
        ada, (a1, a2, a3) = store.add_faces("Ada", [NewFace(rng.standard_normal(512)) for _ in range(3)])
        _, (b1,) = store.add_faces("Bob", [NewFace(rng.standard_normal(512))])
    good = np.frombuffer(_blob(db, a3)[:2048], "<f4")
    flipped = bytearray(_blob(db, a1))
    flipped[43] ^= 1 << 6  # one exponent bit: that component becomes huge
    _set_blob(db, a1, bytes(flipped))
    # Checksums recomputed by whoever damaged them: the values themselves are checked.
    _set_blob(db, a2, _with_crc((good * 1e30).astype("<f4").tobytes()))
    _set_blob(db, b1, _with_crc(np.full(512, np.nan, "<f4").tobytes()))
    with FaceStore(db) as store:
        gallery = store.gallery()
        assert gallery.face_ids.tolist() == [a3]  # Ada keeps her sound face
        assert np.all(np.isfinite(gallery.embeddings))
        assert "damaged face(s) of 'Ada'" in caplog.text and "'Bob'" in caplog.text
        assert sorted(store.damaged_faces()) == [(a1, ada, "fails its checksum"),
                                                 (a2, ada, "length 1e+30, not 1"),
                                                 (b1, ada + 1, "not finite")]
        assert [f[0] for f in store.dump().faces] == [a3]
        _set_blob(db, a3, b"\x01")  # a 1-byte embedding: the same, not a crash
        assert store.gallery().face_ids.size == 0
        assert (a3, ada, "1 bytes, not 2052") in store.damaged_faces()


def test_a_version_2_store_is_migrated_without_loss(data_dir: Path, rng: np.random.Generator) -> None:
    """A store written by the previous release (schema 2) opens, gains checksums, keeps every row."""
    from app.pipeline.storage.store import _MIGRATIONS

    db = data_dir / "faces.db"
    data_dir.mkdir()
    con = sqlite3.connect(db)
    con.executescript(_MIGRATIONS[1])
    con.executescript(_MIGRATIONS[2])
    vecs = unit(rng.standard_normal((3, 512)))
    for name, key in [("Straße", "strasse"), ("Émile", "émile")]:
        con.execute("INSERT INTO people(name, key, created, changed) VALUES (?, ?, 1, 1)", (name, key))
    for pid, vec in zip([1, 1, 2], vecs):
        con.execute("INSERT INTO faces(person_id, embedding, thumbnail, source, created, changed, "
                    "embedder) VALUES (?, ?, x'ffd8', 's.jpg', 2, 1, 'v')",
                    (pid, vec.astype("<f4").tobytes()))
    con.execute("UPDATE meta SET value = '5' WHERE key = 'generation'")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()

    with FaceStore(db) as store:
        assert store.generation == 5
        assert [(p.name, p.face_count) for p in store.people()] == [("Straße", 2), ("Émile", 1)]
        assert store.person("STRASSE") is None and store.person("straße").name == "Straße"
        gallery = store.gallery()
        assert gallery.face_ids.tolist() == [1, 2, 3] and np.array_equal(gallery.embeddings, vecs)
        assert store.damaged_faces() == []
        assert store.faces_of(1)[0].thumbnail == b"\xff\xd8"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert {n for (n,) in con.execute("SELECT length(embedding) FROM faces")} == {2052}
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_weiss_and_weiss_with_sharp_s_are_two_people(data_dir: Path, rng: np.random.Generator) -> None:
    with FaceStore(data_dir / "faces.db") as store:
        store.add_faces("Anna Weiß", [NewFace(rng.standard_normal(512))])
        store.add_faces("ANNA WEISS", [NewFace(rng.standard_normal(512))])  # enroll SS
        store.add_faces("anna weiß", [NewFace(rng.standard_normal(512))])  # case only: the same
        store.add_faces("Anna Wei\u0073\u0073", [NewFace(rng.standard_normal(512))])
        store.add_faces("Ame\u0301lie", [NewFace(rng.standard_normal(512))])  # NFD
        store.add_faces("AMÉLIE", [NewFace(rng.standard_normal(512))])  # NFC, upper case
        assert sorted((p.name, p.face_count) for p in store.people()) == [
            ("ANNA WEISS", 2), ("Amélie", 2), ("Anna Weiß", 2)]
        added = store.add_many([("anna weiß", [NewFace(rng.standard_normal(512))]),
                                ("ANNA WEIß", [NewFace(rng.standard_normal(512))])])
        assert list(added) == ["Anna Weiß"] and len(added["Anna Weiß"]) == 2


@pytest.mark.parametrize("name", [
    "Mehr\u200cnaz Rahimi",  # Persian with ZWNJ: مهر‌ناز
    "\u0645\u0647\u0631\u200c\u0646\u0627\u0632",  # مهر‌ناز in Arabic script
    "\u0905\u0930\u094d\u091c\u0941\u0928 \u0915\u0941\u092e\u093e\u0930",  # अर्जुन कुमार (Hindi)
    "\u0915\u094d\u200d\u0937",  # Devanagari with ZWJ (explicit half form)
    "\u738b\u5c0f\u660e",  # 王小明
    "\u0645\u062d\u0645\u062f \u0639\u0644\u064a",  # محمد علي
    "\u1f48\u03b4\u03c5\u03c3\u03c3\u03b5\u03cd\u03c2",  # Ὀδυσσεύς
    "Stra\u00dfe",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # an emoji ZWJ family
    "Zo\u00eb \u00d8stergaard",
])
def test_real_names_from_many_scripts_are_accepted(name: str) -> None:
    assert normalize_name(name) == name


@pytest.mark.parametrize("bad", [
    "\u3164", "\u3164 \u3164", "\u2800", "\u115f\u1160", "\u200d", "\u200c\u200c",  # invisible
    "Ada\u202eLovelace", "\u2066Ada\u2069",  # bidi controls
    "Ada\u00adKing", "Ada\ufeffKing", "Ada\u2060King",  # other format characters
    "\u200dAda", "Ada\u200c",  # a joiner at an end joins nothing
    "Ada\x1b[31m", "Ada\x07", "Ada\ue000",  # control, private use
])
def test_invisible_and_control_names_are_refused(bad: str) -> None:
    with pytest.raises(PersonError):
        normalize_name(bad)


def test_stale_index_temp_files_are_removed_at_open(tmp_path: Path, rng: np.random.Generator) -> None:
    import fcntl
    import os

    gallery, _ = clustered_gallery(rng, people=5, per=2)
    path = tmp_path / "faces.hnsw"
    FaceIndex(gallery, path)
    stale = tmp_path / ".faces.hnsw-k1ll3d.tmp"  # a save killed before its rename
    stale.write_bytes(path.read_bytes())
    busy = tmp_path / ".faces.hnsw-s4v1ng.tmp"  # another process is saving right now
    busy.write_bytes(b"partial")
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        FaceIndex(gallery, path)
    finally:
        os.close(fd)
    assert not stale.exists() and busy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".faces.hnsw-s4v1ng.tmp", "faces.hnsw", "faces.hnsw.json"])


def test_a_short_index_write_keeps_the_previous_index(tmp_path: Path, rng: np.random.Generator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC: hnswlib writes a truncated file without an error; it must never be installed."""
    from app.pipeline.recognition import index as index_mod
    from app.pipeline.storage.store import GalleryDelta

    gallery, centres = clustered_gallery(rng, people=20, per=2)
    path = tmp_path / "faces.hnsw"
    index = FaceIndex(gallery, path, search="hnsw")
    before = (path.read_bytes(), path.with_name("faces.hnsw.json").read_text())
    real = index_mod._save_graph

    def disk_full(graph, target: Path) -> None:
        real(graph, target)
        with open(target, "r+b") as f:  # what a full disk leaves: the first part only
            f.truncate(target.stat().st_size // 3)

    monkeypatch.setattr(index_mod, "_save_graph", disk_full)
    new = Gallery(np.array([1000]), np.array([99]), unit(rng.standard_normal((1, 512))), {99: "New"}, 2)
    index.apply(GalleryDelta(new, np.empty(0, np.int64), [], 2))
    index.flush()
    assert (path.read_bytes(), path.with_name("faces.hnsw.json").read_text()) == before
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    # The next start sees a stale index and rebuilds it from the store.
    full = Gallery(np.append(gallery.face_ids, 1000), np.append(gallery.person_ids, 99),
                   np.vstack([gallery.embeddings, new.embeddings]), {**gallery.names, 99: "New"}, 2)
    again = FaceIndex(full, path, search="hnsw")
    assert len(again) == 41 and again.match(new.embeddings)[0].name == "New"
    assert json.loads(path.with_name("faces.hnsw.json").read_text())["generation"] == 2


def _forge(path: Path, index, gallery: Gallery) -> None:
    """Put *index* at *path* with metadata that passes its own checksum."""
    from app.pipeline.models import sha256_of

    index.save_index(str(path))
    meta = {"format": 1, "generation": gallery.generation, "count": len(gallery.face_ids),
            "total": index.get_current_count(), "sha256": sha256_of(path)}
    path.with_name(path.name + ".json").write_text(json.dumps(meta))


def test_an_index_that_does_not_fit_the_store_is_rebuilt(tmp_path: Path, rng: np.random.Generator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import hnswlib

    gallery, centres = clustered_gallery(rng, people=30, per=2)
    path = tmp_path / "faces.hnsw"
    expected = [m.person_id for m in FaceIndex(gallery, None, search="exact").match(centres)]
    n = len(gallery.face_ids)

    other_dim = hnswlib.Index(space="cosine", dim=128)  # valid, of another dimension
    other_dim.init_index(max_elements=n)
    other_dim.add_items(rng.standard_normal((n, 128)).astype(np.float32), gallery.face_ids)
    _forge(path, other_dim, gallery)
    index = FaceIndex(gallery, path, search="hnsw")
    assert "dimension 128, not 512" in caplog.text
    assert [m.person_id for m in index.match(centres)] == expected

    strangers = hnswlib.Index(space="cosine", dim=512)  # labels the store does not have
    strangers.init_index(max_elements=n)
    strangers.add_items(gallery.embeddings, gallery.face_ids + 10_000)
    _forge(path, strangers, gallery)
    index = FaceIndex(gallery, path, search="hnsw")
    assert "does not match the store" in caplog.text
    assert [m.person_id for m in index.match(centres)] == expected


def test_removing_above_the_rebuild_limit_leaves_no_vector_in_the_index(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.pipeline.recognition import index as index_mod
    from app.pipeline.storage.store import GalleryDelta

    monkeypatch.setattr(index_mod, "REBUILD_ON_DELETE_LIMIT", 4)  # as if above 10,000 faces
    gallery, centres = clustered_gallery(rng, people=10, per=2)
    path = tmp_path / "faces.hnsw"
    index = FaceIndex(gallery, path, search="hnsw")
    gone = gallery.face_ids[gallery.person_ids == gallery.person_ids[0]]
    stored = index._hnsw.get_items(gone)  # the vectors as hnswlib keeps them
    on_disk = path.read_bytes()
    assert all(np.asarray(v, "<f4").tobytes()[:64] in on_disk for v in stored)
    empty = Gallery(np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 512), np.float32), {}, 2)
    index.apply(GalleryDelta(empty, gone, [int(gallery.person_ids[0])], 2))
    assert index._hnsw_total == 20  # marked deleted, not rebuilt
    index.flush()
    on_disk = path.read_bytes()
    assert not any(np.asarray(v, "<f4").tobytes()[:64] in on_disk for v in stored)
    assert all(m.person_id != int(gallery.person_ids[0]) for m in index.match(centres))
    assert [m.person_id for m in index.match(centres[1:])] == list(range(2, 11))


def test_a_read_only_folder_is_opened_read_only(rng: np.random.Generator) -> None:
    """Not simulated: the process really may not write the folder or the file.

    As root (CI), permissions do not bind, so a forked child drops to ``nobody`` first
    (the modules it needs are already loaded: a fresh interpreter could not start as
    ``nobody`` where Python lives under /root).
    """
    import os
    import shutil
    import tempfile

    from app.pipeline.errors import StoreError
    from app.pipeline.storage.backup import restore_backup, write_backup

    root = Path(tempfile.mkdtemp(prefix="facerec-ro-"))
    try:
        os.chmod(root, 0o755)
        db = root / "data" / "faces.db"
        with FaceStore(db) as store:
            store.add_faces("Ada", [NewFace(rng.standard_normal(512)) for _ in range(2)])
        before = sorted(p.name for p in db.parent.iterdir())
        as_root = os.geteuid() == 0
        for p in db.parent.iterdir():
            if as_root:
                os.chown(p, 65534, 65534)
            os.chmod(p, 0o400)
        if as_root:
            os.chown(db.parent, 65534, 65534)
        os.chmod(db.parent, 0o555)
        out = root / "out" / "faces.bak"  # somewhere the child may write
        out.parent.mkdir()
        if as_root:
            os.chown(out.parent, 65534, 65534)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - reported through the pipe
            answer = "?"
            try:
                if as_root:
                    os.setgid(65534)
                    os.setuid(65534)
                assert not os.access(db.parent, os.W_OK)
                write_backup(db, out)  # a backup too (issue 13 item 19)
                with FaceStore(db) as store:
                    people = [(p.name, p.face_count) for p in store.people()]
                    faces = len(store.gallery().face_ids)
                    try:
                        store.add_faces("Bob", [NewFace(np.ones(512))])
                        refused = "written"
                    except StoreError as exc:
                        refused = str(exc)
                answer = json.dumps([people, faces, refused])
            except BaseException as exc:  # noqa: BLE001 - anything goes back to the test
                answer = json.dumps(f"{type(exc).__name__}: {exc}")
            finally:
                os.write(write, answer.encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            answer = json.loads(f.read())
        os.waitpid(child, 0)
        assert answer[:2] == [[["Ada", 2]], 2], answer
        assert "is read-only here" in answer[2]
        assert sorted(p.name for p in db.parent.iterdir()) == before  # nothing created
        assert restore_backup(out, root / "restored" / "faces.db", root / "restored" / "faces.hnsw") == 1
        with FaceStore(root / "restored" / "faces.db") as restored:
            assert [(p.name, p.face_count) for p in restored.people()] == [("Ada", 2)]
    finally:
        for p in [root, *root.rglob("*")]:
            os.chmod(p, 0o700)
        shutil.rmtree(root)
