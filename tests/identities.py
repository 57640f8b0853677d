"""Who is who in the shared photos: the identities the same-person cut-offs are measured on."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import DEEPFACE, FR


def identity_groups() -> dict[str, list[Path]]:
    """Photos per person: master.csv's "Yes" pairs joined into people, plus Obama and Biden.

    master.csv labels every pair among its 25 photos, so two groups are known to be
    different people; the face_recognition photos show Obama (four) and Biden (one),
    neither of whom is in the deepface set.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    with open(DEEPFACE / "master.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            a, b = find(row["file_x"]), find(row["file_y"])
            if row["Decision"] == "Yes":
                parent[a] = b
    groups: dict[str, list[Path]] = {}
    for photo in sorted(parent):
        groups.setdefault(find(photo), []).append(DEEPFACE / photo)
    out = {f"deepface:{Path(k).stem}": v for k, v in groups.items()}
    out["obama"] = [FR / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png")]
    out["biden"] = [FR / "biden.jpg"]
    return out
