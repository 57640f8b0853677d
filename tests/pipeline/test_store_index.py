"""The SQLite store and the HNSW index: persistence, rebuilds and the per-person rule."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.errors import PersonError
from app.pipeline.index import MEAN_FACE_WEIGHT, FaceIndex, faces_per_decision, person_score
from app.pipeline.store import SCHEMA_VERSION, FaceStore, Gallery, NewFace, normalize_name


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
