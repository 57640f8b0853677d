"""A seeded open-set split of LFW: who is enrolled, who is probed, who is a stranger.

LFW (Labeled Faces in the Wild) has 5749 people: 1680 with two photos or more, 4069 with
one. The split draws, with a seed, two disjoint sets of people:

* **report** (the figures in README.md): `SplitPlan.enrolled` people with at least three
  photos, enrolled with two photos each, their other photos (at most `SplitPlan.probes`
  each) as known probes; `SplitPlan.fillers` more people with exactly two photos, enrolled
  too, so the gallery can grow to 1000 people; `SplitPlan.strangers` one-photo people, never
  enrolled, as strangers.
* **calibration** (for ``facerec calibrate``: never tune on what you report): everyone
  left over, in the same three roles, plus **mean**: every photo of the calibration
  people that is in none of View 2's pairs (``lfw_dir_names/pairs.txt``), for
  ``facerec embedding-mean``. The mean embedding is thus made from people who are never
  enrolled or probed in the report split and from photos that are never in a View 2
  pair, so neither benchmark sees its own data in it.

Each role is a folder with one subfolder per person (as ``facerec import`` and
``facerec eval-openset`` read), holding links to the LFW files (copies where links
cannot be made). ``split.json`` records the seed and every file chosen.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.errors import FacerecError
from app.pipeline.imageio import IMAGE_SUFFIXES, display_name
from app.pipeline.tools.evaluate import read_pairs

log = logging.getLogger(__name__)

#: The LFW site's folder of deep-funneled images (umass-vis-lfw/umass-vis-lfw.github.io).
IMAGES_SUBDIR = "images_deepfunneled"
#: View 2's pairs in the same repository.
PAIRS_FILE = Path("lfw_dir_names") / "pairs.txt"
ROLES = ("gallery", "known", "strangers")


@dataclass(frozen=True)
class SplitPlan:
    """How many people of each kind the report split gets (calibration gets the rest)."""

    enrolled: int = 600
    fillers: int = 400
    strangers: int = 2000
    photos: int = 2
    probes: int = 3


def images_dir(lfw_dir: Path) -> Path:
    """The folder holding one subfolder per person: LFW_DIR/images_deepfunneled or LFW_DIR."""
    lfw_dir = Path(lfw_dir)
    sub = lfw_dir / IMAGES_SUBDIR
    return sub if sub.is_dir() else lfw_dir


def lfw_people(root: Path) -> dict[str, list[str]]:
    """Person -> their image file names (sorted), for every subfolder with images."""
    try:
        folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise FacerecError(f"{display_name(root)}: cannot list ({exc.strerror or exc})") from None
    people = {}
    for folder in folders:
        files = sorted(f.name for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            people[folder.name] = files
    return people


def plan_split(people: dict[str, list[str]], seed: int, plan: SplitPlan) -> dict[str, Any]:
    """Choose the people and files of both splits (no file is touched).

    Returns ``{"report": {role: {person: [files]}}, "calibration": {...}}``.
    """
    rng = np.random.default_rng(seed)
    names = sorted(people)

    def shuffled(pool: list[str]) -> list[str]:
        return [pool[i] for i in rng.permutation(len(pool))]

    probed = shuffled([n for n in names if len(people[n]) > plan.photos])
    fillers = shuffled([n for n in names if len(people[n]) == plan.photos])
    strangers = shuffled([n for n in names if len(people[n]) < plan.photos])
    for what, pool, want in (("people with more than", probed, plan.enrolled),
                             ("people with exactly", fillers, plan.fillers),
                             ("people with fewer than", strangers, plan.strangers)):
        if len(pool) <= want:
            raise FacerecError(f"too few {what} {plan.photos} photos: {len(pool)}, and the report "
                               f"split alone needs {want} (the calibration split needs more)")

    def part(probed: list[str], fillers: list[str], strangers: list[str]) -> dict[str, Any]:
        gallery: dict[str, list[str]] = {}
        known: dict[str, list[str]] = {}
        for n in probed:
            files = shuffled(people[n])
            gallery[n] = sorted(files[:plan.photos])
            known[n] = sorted(files[plan.photos:plan.photos + plan.probes])
        for n in fillers:
            gallery[n] = list(people[n])
        return {"gallery": gallery, "known": known, "strangers": {n: list(people[n]) for n in strangers}}

    return {"report": part(probed[:plan.enrolled], fillers[:plan.fillers], strangers[:plan.strangers]),
            "calibration": part(probed[plan.enrolled:], fillers[plan.fillers:],
                                strangers[plan.strangers:])}


def view2_photos(lfw_dir: Path) -> set[str] | None:
    """Every photo in View 2's pairs, as "Person/Person_0001.jpg"; None if pairs.txt is absent."""
    path = Path(lfw_dir) / PAIRS_FILE
    if not path.is_file():
        return None
    return {f for pair in read_pairs(path) for f in (pair.file_x, pair.file_y)}


def mean_photos(people: dict[str, list[str]], calibration: dict[str, Any],
                exclude: set[str]) -> dict[str, list[str]]:
    """Every photo of the calibration split's people that is not in *exclude*."""
    who = sorted({n for role in ROLES for n in calibration[role]})
    chosen = {n: [f for f in people[n] if f"{n}/{f}" not in exclude] for n in who}
    return {n: files for n, files in chosen.items() if files}


def make_split(lfw_dir: Path, out_dir: Path, seed: int = 0, plan: SplitPlan | None = None
               ) -> dict[str, Any]:
    """Write both splits under *out_dir* (which must be empty or absent); return the manifest.

    Raises
    ------
    FacerecError
        If LFW is not found, is too small, or *out_dir* is not empty.
    """
    plan = plan or SplitPlan()
    src = images_dir(lfw_dir)
    if not src.is_dir():
        raise FacerecError(f"{display_name(lfw_dir)}: not a directory")
    people = lfw_people(src)
    if not people:
        raise FacerecError(f"{display_name(lfw_dir)}: no person folders with images (expected "
                           f"{IMAGES_SUBDIR}/<Person>/<Person>_0001.jpg)")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FacerecError(f"{display_name(out_dir)}: exists and is not empty")
    chosen = plan_split(people, seed, plan)
    view2 = view2_photos(lfw_dir)
    chosen["calibration"]["mean"] = mean_photos(people, chosen["calibration"], view2 or set())
    copied = 0
    for split, roles in chosen.items():
        for role, who in roles.items():
            for person, files in who.items():
                folder = out_dir / split / role / person
                folder.mkdir(parents=True, exist_ok=True)
                for f in files:
                    copied += _link(src.resolve() / person / f, folder / f)
    manifest = {"seed": seed, "plan": asdict(plan), "source": str(src.resolve()),
                "copied_instead_of_linked": copied,
                "mean_excludes_view2": view2 is not None,
                "counts": {split: {role: {"people": len(who), "photos": sum(map(len, who.values()))}
                                   for role, who in roles.items()} for split, roles in chosen.items()},
                **chosen}
    (out_dir / "split.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _link(src: Path, dst: Path) -> int:
    """Symlink *dst* to *src*; copy where links are not allowed. 1 if copied."""
    try:
        os.symlink(src, dst)
        return 0
    except OSError:
        shutil.copy2(src, dst)
        return 1
