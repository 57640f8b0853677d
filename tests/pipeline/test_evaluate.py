"""Verification evaluation: LFW's pairs format, 10-fold protocol, TAR at FAR, scores and plot."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.errors import FacerecError
from app.pipeline.tools.evaluate import Pair, read_pairs, tar_at_far, verify_pairs
from tests.conftest import DEEPFACE
from tests.people import lfw_tree, shared_people, write_lfw_pairs
from tests.pipeline.test_cli import run


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shared photos in LFW's layout and a 10-fold pairs.txt over them."""
    root = tmp_path_factory.mktemp("lfw")
    lfw_tree(root / "images", max_side=400)
    write_lfw_pairs(root / "pairs.txt", folds=10, per_fold=12)
    return root / "pairs.txt", root / "images"


def test_lfw_pairs_file_is_read_with_its_folds(lfw_like: tuple[Path, Path]) -> None:
    pairs_txt, images = lfw_like
    pairs = read_pairs(pairs_txt)
    assert len(pairs) == 240
    assert [sum(p.fold == k for p in pairs) for k in range(10)] == [24] * 10
    first_fold = pairs[:24]
    assert [p.same for p in first_fold] == [True] * 12 + [False] * 12
    for p in pairs:
        assert (images / p.file_x).is_file() and (images / p.file_y).is_file()
        same_person = p.file_x.split("/")[0] == p.file_y.split("/")[0]
        assert p.same == same_person or not p.same
    assert all(p.file_x.split("/")[0] == p.file_y.split("/")[0] for p in pairs if p.same)


def test_eval_on_lfw_format_reports_ten_fold_accuracy(capsys, data_dir: Path, tmp_path: Path,
                                                      lfw_like: tuple[Path, Path]) -> None:
    pairs_txt, images = lfw_like
    scores, plot = tmp_path / "scores.csv", tmp_path / "roc.png"
    code, out, err = run(capsys, data_dir, "eval", pairs_txt, "--images", images, "--json",
                         "--scores", scores, "--plot", plot)
    assert code == 0, err
    report = json.loads(out)
    assert report["folds"] == 10 and report["pairs"] == 240 and report["scored_pairs"] == 240
    assert len(report["fold_accuracy"]) == 10 and len(report["fold_thresholds"]) == 10
    assert report["accuracy_mean"] == pytest.approx(np.mean(report["fold_accuracy"]), abs=1e-6)
    assert report["accuracy_mean"] >= 0.95 and report["auc"] >= 0.99
    assert [t["far"] for t in report["tar_at_far"]] == [0.01, 0.001, 0.0001]
    for t in report["tar_at_far"]:
        assert "other 9 folds" in t["method"] and "held-out fold" in t["method"]
        assert t["tar_std"] is not None
    # The CSV fields that existed before are all still there.
    assert set(report) >= {"auc", "accuracy", "threshold", "tar_at_far_1pct",
                           "threshold_at_far_1pct", "no_face", "unreadable"}
    rows = list(csv.DictReader(scores.open(encoding="utf-8")))
    assert len(rows) == 240
    assert sorted({int(r["fold"]) for r in rows}) == list(range(1, 11))
    assert sum(int(r["same"]) for r in rows) == 120
    same = np.array([float(r["score"]) for r in rows if r["same"] == "1"])
    assert np.median(same) > 0.6
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run(capsys, data_dir, "eval", pairs_txt, "--images", images)
    assert code == 0
    assert "threshold chosen on 9 folds, tested on the held-out one" in out
    assert "TAR @ FAR=0.1%" in out and "TAR @ FAR=0.01%" in out


def test_csv_pairs_say_they_have_no_folds(capsys, data_dir: Path, tmp_path: Path) -> None:
    scores = tmp_path / "scores.csv"
    code, out, err = run(capsys, data_dir, "eval", DEEPFACE / "master.csv", "--scores", scores)
    assert code == 0, err
    assert "no folds: thresholds are set and measured on the same pairs" in out
    assert "TAR @ FAR=0.1%" in out and "lowest with at most 0 of 262 different pairs" in out
    rows = list(csv.DictReader(scores.open(encoding="utf-8")))
    assert len(rows) == 300 and {r["fold"] for r in rows} == {""}
    code, out, _ = run(capsys, data_dir, "eval", DEEPFACE / "master.csv", "--json")
    report = json.loads(out)
    assert report["folds"] is None and "accuracy_mean" not in report
    assert [t["far"] for t in report["tar_at_far"]] == [0.01, 0.001, 0.0001]
    assert report["tar_at_far"][0]["tar"] == report["tar_at_far_1pct"]


def _scored(scores: list[tuple[float, bool, int]]):  # noqa: ANN202
    """Pairs with exactly these cosine scores (one fresh pair of files each)."""
    vecs: dict[str, np.ndarray] = {}
    pairs = []
    for i, (c, same, fold) in enumerate(scores):
        x, y = np.zeros(512, np.float32), np.zeros(512, np.float32)
        x[0], y[0], y[1] = 1.0, c, np.sqrt(1 - c * c)
        vecs[f"x{i}"], vecs[f"y{i}"] = x, y
        pairs.append(Pair(f"x{i}", f"y{i}", same, fold))
    return pairs, lambda p: vecs[p.name]


def test_each_fold_is_judged_by_a_threshold_from_the_other_folds(tmp_path: Path) -> None:
    # Fold 0 scores high, fold 1 low: a threshold fitted on one fold misjudges the other,
    # which only held-out evaluation shows (the best single threshold gets 6 of 8 right).
    pairs, embed = _scored([(0.9, True, 0), (0.8, True, 0), (0.6, False, 0), (0.5, False, 0),
                            (0.45, True, 1), (0.4, True, 1), (0.1, False, 1), (0.0, False, 1)])
    (tmp_path / "x0").touch()
    report = verify_pairs(pairs, tmp_path, embed)
    assert report.folds == 2
    assert report.fold_thresholds == pytest.approx([0.25, 0.7])
    assert report.fold_accuracy == [0.5, 0.5]
    assert report.best_accuracy == 0.75


def test_tar_at_far_allows_exactly_the_permitted_false_accepts() -> None:
    different = np.linspace(0, 0.5, 1000)
    same = np.linspace(0.45, 0.95, 100)
    tar, thr = tar_at_far(same, different, 0.001)  # one false accept in 1000 allowed
    assert different[-2] < thr and (different >= thr).sum() == 1
    assert tar == (same >= thr).mean()
    tar, thr = tar_at_far(same, different, 0.0001)  # below 1/1000: none allowed
    assert thr > different.max() and (different >= thr).sum() == 0


@pytest.mark.parametrize(("text", "message"), [
    ("10\t300\nAbel_Pacheco\t1\t4\n", "the header says 10 fold(s) of 300"),
    ("1\t1\nA\t1\t2\nA\t1\n", ":3: expected a different-person pair"),
    ("1\t1\nA\tone\t2\nA\t1\tB\t1\n", ":2: expected a same-person pair"),
])
def test_malformed_lfw_pairs_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text(text)
    with pytest.raises(FacerecError, match=re.escape(message)):
        read_pairs(bad)


def test_eval_without_the_images_says_where_to_point(capsys, data_dir: Path, tmp_path: Path,
                                                     lfw_like: tuple[Path, Path]) -> None:
    pairs_txt, _ = lfw_like
    code, _, err = run(capsys, data_dir, "eval", pairs_txt)
    assert code == 1 and "pass the image folder with --images" in err
    assert "Traceback" not in err
    assert len(shared_people()) == 15
