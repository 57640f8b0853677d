"""The recognition log kept in the store, and windows that fit and keep their layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from PySide6.QtWidgets import QApplication

from app.cli import main
from app.pipeline.storage.store import FaceStore, Sighting
from tests.conftest import FR, REPO


def strangers(win) -> list:  # noqa: ANN001
    return [r for r in win.log_panel.sightings() if r.person_id is None]


def test_the_log_is_kept_in_the_store_one_row_per_stranger(qtbot, make_window, paths, pair_video,  # noqa: ANN001
                                                           monkeypatch):
    with FaceStore(paths.db) as store:  # a row from long ago: older than the retention
        store.record_sightings([Sighting(uuid.uuid4().hex, None, time.time() - 40 * 86400,
                                         time.time() - 40 * 86400, 5, 0.2, "old.avi")])
    win = make_window(pair_video)
    # Two strangers side by side: one row each (by track), not one "Unknown" row.
    qtbot.waitUntil(lambda: len(strangers(win)) == 2, timeout=30000)
    assert len({r.track for r in strangers(win)}) == 2
    assert [n for n, _ in win.log_panel.rows()] == ["Unknown", "Unknown"]
    win.close()

    # A new window shows the log from the store; the old row was pruned at start.
    again = make_window(None)
    qtbot.waitUntil(lambda: len(again.log_panel.sightings()) == 2, timeout=30000)
    assert {r.source for r in again.log_panel.sightings()} == {pair_video.name}
    with FaceStore(paths.db) as store:
        assert len(store.sightings()) == 2
    # Clear asks first: "no" keeps the rows...
    asked = []
    monkeypatch.setattr(again.log_panel, "_confirm_clear", lambda: asked.append(1) or False)
    again.log_panel.clear_button.click()
    assert asked == [1] and len(again.log_panel.sightings()) == 2
    # ... "yes" empties the log, in the store too.
    monkeypatch.setattr(again.log_panel, "_confirm_clear", lambda: True)
    again.log_panel.clear_button.click()
    qtbot.waitUntil(lambda: again.log_panel.sightings() == [], timeout=30000)
    with FaceStore(paths.db) as store:
        assert store.sightings() == []


def test_removing_a_person_removes_their_log_rows(qtbot, make_window, paths, pair_video):  # noqa: ANN001
    assert main(["--data-dir", str(paths.root), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    win = make_window(pair_video)
    qtbot.waitUntil(lambda: "Obama" in [n for n, _ in win.log_panel.rows()], timeout=30000)
    assert main(["--data-dir", str(paths.root), "remove", "Obama"]) == 0
    qtbot.waitUntil(lambda: "Obama" not in [n for n, _ in win.log_panel.rows()], timeout=30000)
    with FaceStore(paths.db) as store:
        assert all(r.person_id is None for r in store.sightings())


def test_the_log_panel_keeps_its_width_and_shows_whole_names(qtbot, make_window, paths,  # noqa: ANN001
                                                             pair_video, tmp_path, monkeypatch):
    assert main(["--data-dir", str(paths.root), "enroll", "Lin-Manuel Miranda",
                 str(FR / "obama.jpg")]) == 0
    win = make_window(pair_video)
    qtbot.waitUntil(lambda: "Lin-Manuel Miranda" in [n for n, _ in win.log_panel.rows()],
                    timeout=30000)
    QApplication.processEvents()
    table = win.log_panel.table
    row = [n for n, _ in win.log_panel.rows()].index("Lin-Manuel Miranda")
    needed = table.fontMetrics().horizontalAdvance("Lin-Manuel Miranda")
    assert table.columnWidth(1) >= needed + 8  # the whole name, not "Lin-Manuel …"
    assert table.item(row, 1).toolTip().startswith("Lin-Manuel Miranda")
    dock, video = win.log_dock.width(), win.view.width()
    long_name = tmp_path / ("recognition-log-of-the-front-door-camera-" + "x" * 20 + ".csv")
    monkeypatch.setattr(win.log_panel, "_ask_csv_path", lambda: str(long_name))
    win.export_action.trigger()
    qtbot.waitUntil(lambda: "Exported" in win.log_panel.summary.text(), timeout=30000)
    # The next relayout (the user resizes the window a little) must not widen the panel.
    win.resize(win.width() + 40, win.height())
    QApplication.processEvents()
    assert win.log_dock.width() == dock and win.view.width() == video + 40


SCALED = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import app.ui  # noqa
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication
from app.config import Paths
from app.ui.app import create_app
from app.ui.screen import available

app = create_app()
from app.ui.main_window import MainWindow
win = MainWindow(Paths(Path(sys.argv[2])).ensure(), None)
win.show()
out = {"screen": list(available(win).getRect())}

def fits(w, name):
    area = available(w)
    g = w.frameGeometry()
    out[name] = {"rect": list(g.getRect()), "fits": area.contains(g)}

fits(win, "main")
while not win._ready:
    app.processEvents()
dlg = win.open_enroll_dialog()
app.processEvents()
fits(dlg, "enroll")
b = dlg.save_button
corner = b.mapToGlobal(QPoint(b.width() - 1, b.height() - 1))
out["save_on_screen"] = available(dlg).contains(corner) and b.isVisible()
dlg.reject()
people = win.open_people_dialog()
app.processEvents()
fits(people, "people")
people.close()
settings = win.open_settings_dialog()
app.processEvents()
fits(settings, "settings")
settings.reject()
guide = win.open_guide()
app.processEvents()
fits(guide, "guide")
guide.close()
win.close()
print(json.dumps(out))
"""


def test_every_window_fits_the_screen_at_scale_factor_2(tmp_path: Path) -> None:
    """A 1600x1000 screen at QT_SCALE_FACTOR=2 is 800x500 logical pixels."""
    config = tmp_path / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "s", "x": 0, "y": 0, "width": 1600,
                                                "height": 1000, "logicalDpi": 96, "dpr": 1}]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}",
           "QT_SCALE_FACTOR": "2", "FACEREC_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-c", SCALED, str(REPO), str(tmp_path / "data")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["screen"] == [0, 0, 800, 500]
    for name in ("main", "enroll", "people", "settings", "guide"):
        assert out[name]["fits"], (name, out[name])
    assert out["save_on_screen"]
