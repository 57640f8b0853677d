"""The shared photos grouped by person, and evaluation data sets built from them.

The deepface set's identities are read off its labelled pairs (``master.csv`` and
``face-recognition-pivot.csv``: "Yes" pairs join two photos of one person); the
face_recognition photos add Obama and Biden. 15 people, 79 photos.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tests.conftest import DEEPFACE, FR

_DEEPFACE_PEOPLE = [
    ["img1", "img2", "img4", "img5", "img6", "img7", "img10", "img11"],
    ["img26", "img27", "img28", "img42", "img43", "img44", "img45", "img46"],
    ["img8", "img9", "img47", "img48", "img49", "img50", "img51"],
    ["img3", "img12", "img53", "img54", "img55", "img56"],
    ["img16", "img17", "img59", "img61", "img62"],
    ["img13", "img14", "img15", "img57", "img58"],
    ["img29", "img30", "img31", "img32", "img33"],
    ["img38", "img39", "img40", "img41"],
    ["img34", "img35", "img36", "img37"],
    ["img18", "img19", "img67"],
    ["img20", "img21"],
    ["img22", "img23"],
    ["img24", "img25"],
]


def shared_people() -> dict[str, list[Path]]:
    """Person name -> their shared photos (largest group first)."""
    people = {f"Person_{chr(ord('A') + i)}": [DEEPFACE / f"{n}.jpg" for n in group]
              for i, group in enumerate(_DEEPFACE_PEOPLE)}
    people["Barack_Obama"] = [FR / "obama.jpg", FR / "obama2.jpg", FR / "obama3.jpg"]
    people["Joe_Biden"] = [FR / "biden.jpg"]
    return people


def link(src: Path, dst: Path, max_side: int | None = None) -> None:
    """Make *dst* show *src*: a symlink (a copy where links are not allowed), or with
    *max_side* a JPEG copy scaled down to fit it (faster to read and scan for faces)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if max_side is not None:
        with Image.open(src) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            im.save(dst, "JPEG", quality=92)
        return
    try:
        os.symlink(src, dst)
    except OSError:
        dst.write_bytes(src.read_bytes())


def lfw_tree(root: Path, max_side: int | None = None) -> dict[str, list[str]]:
    """The shared photos laid out as LFW lays out its images: ``name/name_0001.jpg``."""
    out = {}
    for name, photos in shared_people().items():
        out[name] = []
        for i, photo in enumerate(photos, start=1):
            rel = f"{name}/{name}_{i:04d}.jpg"
            link(photo, root / rel, max_side)
            out[name].append(rel)
    return out


def write_lfw_pairs(path: Path, folds: int, per_fold: int, seed: int = 0) -> None:
    """An LFW-format pairs file over `lfw_tree`'s people: FOLDS x (per_fold same + different)."""
    rng = np.random.default_rng(seed)
    people = {n: len(p) for n, p in shared_people().items()}
    multi = [n for n, k in people.items() if k >= 2]
    names = list(people)
    lines = [f"{folds}\t{per_fold}"]
    for _ in range(folds):
        for _ in range(per_fold):
            n = multi[rng.integers(len(multi))]
            a, b = rng.choice(people[n], 2, replace=False) + 1
            lines.append(f"{n}\t{a}\t{b}")
        for _ in range(per_fold):
            x, y = rng.choice(len(names), 2, replace=False)
            lines.append(f"{names[x]}\t{rng.integers(people[names[x]]) + 1}\t"
                         f"{names[y]}\t{rng.integers(people[names[y]]) + 1}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
