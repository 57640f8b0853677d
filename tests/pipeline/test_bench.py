"""``facerec bench`` runs end to end (quick mode) and reports every part.

Speed targets are not asserted here (shared, noisy machines): they are in BENCHMARKS.md.
What is asserted is that the numbers exist and that the measured pipeline behaves:
the tracker embeds less than once per face per frame, the tile scan finds the small
faces that the whole-frame pass misses, and HNSW finds the exact nearest face.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import main
from tests.conftest import DEEPFACE


def test_bench_quick(capsys, tmp_path: Path) -> None:
    out_md = tmp_path / "BENCH.md"
    code = main(["bench", "--quick", "--json", "--sizes", "2000", "--photos", str(DEEPFACE),
                 "--out", str(out_md)])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert r["machine"]["cores"] >= 1
    assert set(r["streams"]) == {"640x480_1face", "640x480_5face", "1280x720_1face",
                                 "1280x720_5face"}
    five = r["streams"]["1280x720_5face"]
    assert five["faces_per_frame"] == 5
    assert all(five["ms"][k] >= 0 for k in ("decode", "detect", "align", "embed", "search"))
    assert five["untracked"]["embed"] > five["ms"]["embed"]  # tracking saves embeddings
    tiles = {(t["scene"], t["tiles"]): t for t in r["tiles"]}
    small = [t for (scene, on), t in tiles.items() if scene.startswith("1080p")]
    assert {t["tiles"]: t["faces_found"] for t in small} == {True: 5, False: 0}
    (search,) = r["search"]
    assert search["faces"] == 2000 and search["hnsw_recall_at_1"] >= 0.99
    assert r["startup"]["first_frame_s"] > 0
    md = out_md.read_text()
    assert "| 1280x720 | 5 |" in md and "recall@1" in md
