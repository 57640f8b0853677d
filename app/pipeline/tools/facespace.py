"""Synthetic face embeddings with the statistics of real ones, for benchmarks at scale.

No gallery of a million real faces is at hand, so the benchmarks of large galleries use
synthetic ones. Identities drawn as uniform random directions in 512 dimensions (the
``uniform`` generator of `app.pipeline.tools.bench`) are nearly orthogonal to one another:
no real gallery looks like that, and it is the worst case for a graph index. Real
FaceNet embeddings fill a space of far fewer effective dimensions (on LFW, 99 % of the
variance of the identity centres lies in about 70 of the 512) and strangers are often
close (impostor cosines spread from -0.29 to 0.35, 1-99 %, with the app's centred embeddings).

`FaceSpace` is a Gaussian model of the app's own embeddings, fitted on LFW:

* identity centres ``c ~ N(mean, B)``, with ``B`` the covariance *between* people,
  estimated as the covariance of one photo per person (all 5,749 people) minus the
  within-person covariance;
* a photo of a person ``x = normalise(c + s a e)``, ``e ~ N(0, W)``, with ``W`` the
  average within-person covariance of the people with at least ten photos (each weighted
  equally, so one person with hundreds of photos does not set it); ``a`` scales it to
  the typical person and ``s`` (log-normal per photo, mean square 1) lets some photos be
  poorer than others. ``a`` and the spread of ``s`` are chosen so that the same-person
  cosines of synthetic people match the real ones of all LFW people with two or more
  photos (quantiles 5-95 %): the people with many photos were photographed over years,
  and a real gallery mixes good and poor photos.

Each covariance is kept as its leading eigenpairs plus the rest of its variance spread
evenly over the remaining directions (so the total variance is exact). The fitted file
(``models/face_space.npz``, about 0.3 MB; no LFW image or embedding is in it) is made by::

    python -m app.pipeline.tools.facespace --lfw /path/to/lfw --out models/face_space.npz

which embeds every LFW photo with the app's current crop and model (about 10 minutes on
2 cores; ``--embeddings FILE.npz`` reuses a cache with arrays ``imgs``, ``e``, ``ok``).
The file records the `EMBEDDING_VERSION` it was fitted under.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelError
from app.pipeline.types import EMBEDDING_DIM

log = logging.getLogger(__name__)

FACE_SPACE_FILE = "face_space.npz"
#: Eigenpairs kept per covariance; the rest of its variance is spread isotropically.
COMPONENTS = 128
#: Photos a person needs to count towards the within-person covariance.
MIN_PHOTOS_WITHIN = 10
_QUANTILES = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class Covariance:
    """A covariance as leading eigenpairs plus an isotropic rest."""

    values: np.ndarray  # (k,) variances along `vectors`, descending
    vectors: np.ndarray  # (k, dim) orthonormal rows
    rest: float  # variance per remaining direction

    @classmethod
    def from_matrix(cls, cov: np.ndarray, k: int = COMPONENTS) -> Covariance:
        """The leading *k* eigenpairs of *cov* and the mean of the remaining eigenvalues."""
        vals, vecs = np.linalg.eigh(cov)
        vals, vecs = np.clip(vals[::-1], 0.0, None), vecs[:, ::-1]
        rest = float(vals[k:].sum() / max(1, cov.shape[0] - k))
        return cls(vals[:k].astype(np.float32), vecs[:, :k].T.astype(np.float32), rest)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """*n* draws of N(0, this covariance), float32."""
        k, dim = self.vectors.shape
        z = rng.standard_normal((n, k), dtype=np.float32)
        z *= np.sqrt(self.values)[None, :]
        out: np.ndarray = z @ self.vectors
        if self.rest > 0:
            # Isotropic in the remaining directions (the few along the kept ones are
            # negligible: the rest is under 1 % of the variance).
            out += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(np.sqrt(self.rest))
        return out

    @property
    def total(self) -> float:
        """The total variance (the trace)."""
        return float(self.values.sum() + self.rest * (self.vectors.shape[1] - self.vectors.shape[0]))


@dataclass(frozen=True)
class FaceSpace:
    """The fitted model: mean, between-person and within-person covariance."""

    mean: np.ndarray
    between: Covariance
    within: Covariance
    within_scale: float  # a: variance factor on W
    photo_spread: float  # sigma of log s
    embedding_version: str
    source: str

    def centres(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """*n* identity centres (not normalised: a photo is normalised after its scatter)."""
        out: np.ndarray = self.mean[None, :] + self.between.sample(rng, n)
        return out

    def photos(self, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
        """One unit-length photo embedding per row of *centres*."""
        return _photos(rng, centres, self.within, self.within_scale, self.photo_spread)

    def save(self, path: Path) -> None:
        """Write the model (float16 eigenvectors: about 0.3 MB)."""
        np.savez_compressed(
            path, mean=self.mean.astype(np.float32),
            between_values=self.between.values, between_vectors=self.between.vectors.astype(np.float16),
            between_rest=np.float64(self.between.rest),
            within_values=self.within.values, within_vectors=self.within.vectors.astype(np.float16),
            within_rest=np.float64(self.within.rest), within_scale=np.float64(self.within_scale),
            photo_spread=np.float64(self.photo_spread),
            embedding_version=np.array(self.embedding_version), source=np.array(self.source))


def load_face_space(path: Path | None = None) -> FaceSpace:
    """The fitted model shipped in the models directory (or *path*).

    Raises
    ------
    ModelError
        If the file is missing or not a fitted face space.
    """
    from app.pipeline.models import models_dir

    path = path or models_dir() / FACE_SPACE_FILE
    try:
        with np.load(path) as z:
            def cov(prefix: str) -> Covariance:
                vecs = z[f"{prefix}_vectors"].astype(np.float32)
                # float16 storage: restore orthonormal rows before use.
                q, _ = np.linalg.qr(vecs.T)
                vecs = (q.T * np.sign(np.sum(q.T * vecs, axis=1, keepdims=True))).astype(np.float32)
                return Covariance(z[f"{prefix}_values"].astype(np.float32), vecs,
                                  float(z[f"{prefix}_rest"]))

            return FaceSpace(z["mean"].astype(np.float32), cov("between"), cov("within"),
                             float(z["within_scale"]), float(z["photo_spread"]),
                             str(z["embedding_version"]), str(z["source"]))
    except FileNotFoundError:
        raise ModelError(f"face statistics missing: {path} (made by 'python -m "
                         "app.pipeline.tools.facespace'; see its docstring)") from None
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"face statistics {path} are not readable: {exc}") from None


def _photos(rng: np.random.Generator, centres: np.ndarray, within: Covariance, scale: float,
            spread: float) -> np.ndarray:
    s = np.exp(spread * rng.standard_normal(len(centres)) - spread**2).astype(np.float32)
    x: np.ndarray = centres + within.sample(rng, len(centres)) * (np.float32(np.sqrt(scale)) * s)[:, None]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _same_person_pairs(inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (i < j) of every same-person pair, for rows grouped by label *inv*."""
    first, second = [], []
    for k in np.unique(inv):
        rows = np.flatnonzero(inv == k)
        if len(rows) > 1:
            i, j = np.triu_indices(len(rows), 1)
            first.append(rows[i])
            second.append(rows[j])
    return np.concatenate(first), np.concatenate(second)


def _cosines(x: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    out: np.ndarray = np.einsum("ij,ij->i", x[pairs[0]], x[pairs[1]])
    return out


def fit(embeddings: np.ndarray, labels: np.ndarray, embedding_version: str, source: str,
        seed: int = 0) -> FaceSpace:
    """Fit the model to unit embeddings with person labels (see the module docstring)."""
    e = np.asarray(embeddings, np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    people, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    one = np.array([rng.choice(np.flatnonzero(inv == k)) for k in range(len(people))])
    total = np.cov(e[one].T)
    within = np.zeros((EMBEDDING_DIM, EMBEDDING_DIM))
    many = np.flatnonzero(counts >= MIN_PHOTOS_WITHIN)
    for k in many:
        within += np.cov(e[inv == k].T)
    within /= max(1, len(many))
    log.info("fitted on %d photos of %d people (%d with >= %d photos)", len(e), len(people),
             len(many), MIN_PHOTOS_WITHIN)
    mean = e[one].mean(axis=0).astype(np.float32)
    between, within_c = Covariance.from_matrix(total - within), Covariance.from_matrix(within)
    # The scale and spread of the scatter: match the real same-person cosines, on synthetic
    # people with the real people's photo counts (a small grid; the fit is not sensitive).
    multi = np.isin(inv, np.flatnonzero(counts >= 2))
    pairs = _same_person_pairs(inv[multi])
    real = np.percentile(_cosines(e[multi].astype(np.float32), pairs), _QUANTILES)
    best = (np.inf, 1.0, 0.0)
    g = np.random.default_rng(seed)  # one draw for every grid point: a smooth comparison
    centres = (mean[None, :] + between.sample(g, len(people)))[inv[multi]]
    scatter, z = within_c.sample(g, len(centres)), g.standard_normal(len(centres)).astype(np.float32)
    for scale in np.arange(0.6, 1.05, 0.05):
        for spread in np.arange(0.0, 0.45, 0.05):
            s = np.exp(spread * z - spread**2).astype(np.float32) * np.float32(np.sqrt(scale))
            x = centres + scatter * s[:, None]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            err = float(np.sum((np.percentile(_cosines(x, pairs), _QUANTILES) - real) ** 2))
            best = min(best, (err, float(scale), float(spread)))
    log.info("within-person scale %.2f, photo spread %.2f (squared quantile error %.5f)",
             best[1], best[2], best[0])
    return FaceSpace(mean, between, within_c, round(best[1], 2), round(best[2], 2),
                     embedding_version, source)


def _embed_lfw(lfw: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every LFW photo's embedding (largest face, as `facerec eval` takes it) and its person."""
    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.align import align_face
    from app.pipeline.recognition.detector import FaceDetector
    from app.pipeline.recognition.embedder import FaceEmbedder

    root = lfw / "images_deepfunneled"
    paths = sorted(root.glob("*/*.jpg"))
    det, emb = FaceDetector(), FaceEmbedder(threads=2)
    vecs, names = [], []
    for k, p in enumerate(paths):
        rgb = load_image(p)
        found = det.detect(rgb)
        if found:
            vecs.append(emb.embed(align_face(rgb, det.refine(rgb, found[0]))[None])[0])
            names.append(p.parent.name)
        if k % 1000 == 0:
            log.info("embedded %d of %d photos", k, len(paths))
    return np.array(vecs, np.float32), np.array(names)


def main(argv: list[str] | None = None) -> int:
    """Fit the face statistics to LFW and write them (see the module docstring)."""
    from app.pipeline.recognition.align import EMBEDDING_VERSION

    ap = argparse.ArgumentParser(prog="python -m app.pipeline.tools.facespace",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--lfw", type=Path, required=True, help="LFW folder (images_deepfunneled/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--embeddings", type=Path,
                    help="cached embeddings of every LFW photo (npz: imgs, e, ok) made with "
                         "this EMBEDDING_VERSION")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.embeddings:
        with np.load(args.embeddings) as z:
            ok = z["ok"]
            vecs, names = z["e"][ok], np.array([str(p).split("/")[0] for p in z["imgs"][ok]])
    else:
        if not (args.lfw / "images_deepfunneled").is_dir():
            print(f"error: no images_deepfunneled/ in {args.lfw}", file=sys.stderr)
            return 2
        vecs, names = _embed_lfw(args.lfw)
    space = fit(vecs, names, EMBEDDING_VERSION,
                f"LFW {len(vecs)} photos of {len(np.unique(names))} people")
    space.save(args.out)
    print(f"wrote {args.out}: {space.source}, embedding {space.embedding_version}, "
          f"between-person variance {space.between.total:.3f}, within {space.within.total:.3f} "
          f"x {space.within_scale}, photo spread {space.photo_spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
