"""The benchmark's synthetic faces: fitted to real embeddings, unlike uniform directions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from app.pipeline.tools.bench import synthetic_gallery
from app.pipeline.tools.facespace import fit, load_face_space
from tests.conftest import REPO


def _scores(kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Same-person and different-person cosines, and the participation ratio (effective
    number of dimensions) of a 2,000-face synthetic gallery."""
    g, _, _ = synthetic_gallery(2000, kind=kind)
    s = g.embeddings @ g.embeddings.T
    same = g.person_ids[:, None] == g.person_ids[None, :]
    upper = np.triu(np.ones_like(same), 1)
    ev = np.linalg.eigvalsh(np.cov(g.embeddings.T))
    return s[same & upper], s[~same & upper], float(ev.sum() ** 2 / (ev ** 2).sum())


def test_fitted_faces_look_like_real_ones_and_uniform_ones_do_not() -> None:
    """Figures of the app's real LFW embeddings (models/README.md): same-person median 0.70,
    different-person 1-99 % from -0.29 to 0.35, about 51 effective dimensions."""
    genuine, impostor, dims = _scores("faces")
    assert 0.65 < np.median(genuine) < 0.78
    assert np.percentile(impostor, 1) < -0.15 and np.percentile(impostor, 99) > 0.3
    assert 35 < dims < 80
    genuine, impostor, dims = _scores("uniform")
    assert np.percentile(impostor, 99) < 0.15  # nearly orthogonal strangers
    assert dims > 250


def test_fit_recovers_the_model_it_was_drawn_from() -> None:
    space = load_face_space()
    rng = np.random.default_rng(3)
    people = 1500
    counts = rng.integers(1, 12, people)
    labels = np.repeat(np.arange(people), counts)
    photos = space.photos(rng, space.centres(rng, people)[labels])
    again = fit(photos, labels, space.embedding_version, "synthetic")
    assert abs(again.between.total - space.between.total) < 0.1 * space.between.total
    # The fitted scatter times its scale, as drawn (the scale absorbs the average).
    assert abs(again.within.total * again.within_scale
               - space.within.total * space.within_scale) < 0.15 * space.within.total
    top = np.abs(again.between.vectors[:5] @ space.between.vectors[:20].T).max(axis=1)
    assert (top > 0.8).all()  # the leading directions are found again


def test_the_fitting_command_needs_lfw(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "app.pipeline.tools.facespace", "--lfw", str(tmp_path),
                          "--out", str(tmp_path / "x.npz")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "images_deepfunneled" in out.stderr
    assert not (tmp_path / "x.npz").exists()
