"""The main window end to end: real models, real widgets, a video file as the camera.

``face_video`` shows Obama (frames 0-23), Biden (24-47) and a stranger (48-71) at
12 fps. Obama is enrolled from other photos (obama.jpg, obama2.jpg) through the dialog.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.config import Settings
from app.ui.video_view import KNOWN_COLOR, UNKNOWN_COLOR
from app.ui.worker import FramePayload
from tests.conftest import FR
from tests.video import write_slideshow

OBAMA = range(0, 24)
STRANGER = range(48, 72)


def wait_for_payload(qtbot, win, pred: Callable[[FramePayload], bool],  # noqa: ANN001
                     timeout: int = 20000) -> FramePayload:
    """Wait until the frame on screen satisfies *pred*; replays the video when it ends."""
    def check() -> None:
        msg = win.view.message
        if msg.isVisible() and msg.title.text() == "Video ended":
            msg.buttons["Replay"].click()
        p = win.view.payload
        assert p is not None and pred(p)

    qtbot.waitUntil(check, timeout=timeout)
    return win.view.payload


def names(p: FramePayload) -> list[str | None]:
    return [f.name for f in p.result.faces]


def box_edge_colors(win, payload: FramePayload) -> list:  # noqa: ANN001
    """Colours of the painted view along the right half of the first face's top edge."""
    view = win.view
    image = view.grab().toImage()
    r = view.image_rect()
    scale = r.width() / payload.frame.shape[1]
    x, y, w, _h = payload.result.faces[0].box
    ratio = image.devicePixelRatio()
    out = []
    for k in range(20):
        point = QPointF(r.x() + (x + (0.55 + 0.02 * k) * w) * scale, r.y() + y * scale)
        out.append(image.pixelColor(int(point.x() * ratio), int(round(point.y() * ratio))))
    return out


def drawn_in(colors: list, color, tol: int = 40) -> bool:  # noqa: ANN001
    """True if most sampled pixels (a dashed line has gaps) are *color*."""
    hits = sum(all(abs(a - b) <= tol for a, b in ((c.red(), color.red()),
                                                  (c.green(), color.green()),
                                                  (c.blue(), color.blue()))) for c in colors)
    return hits >= len(colors) // 3


def enroll_from_files(qtbot, win, name: str, files: list[Path]):  # noqa: ANN001, ANN201
    dlg = win.open_enroll_dialog()
    qtbot.keyClicks(dlg.name_edit, name)
    assert not dlg.save_button.isEnabled()  # no face yet
    dlg.add_files(files)
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) + len(dlg.rejected) == len(files)
                    and not dlg.busy(), timeout=30000)
    with qtbot.waitSignal(dlg.saved, timeout=30000) as blocker:
        qtbot.mouseClick(dlg.save_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_enroll_recognise_rename_delete(qtbot, make_window, face_video, monkeypatch):  # noqa: ANN001
    win = make_window(face_video)
    # Before anyone is enrolled, Obama is Unknown.
    p = wait_for_payload(qtbot, win, lambda p: p.position in OBAMA and p.result.faces)
    assert names(p) == [None]

    person = enroll_from_files(qtbot, win, "Obama", [FR / "obama.jpg", FR / "obama2.jpg"])
    assert (person.name, person.face_count) == ("Obama", 2)
    qtbot.waitUntil(lambda: win.people_label.text() == "1 person enrolled", timeout=30000)

    # The running recognizer knows him at once: a green box "Obama 0.xx" on his frames.
    p = wait_for_payload(qtbot, win, lambda p: p.position in OBAMA and "Obama" in names(p))
    assert win.view.face_labels()[0].startswith("Obama 0.")
    assert drawn_in(box_edge_colors(win, p), KNOWN_COLOR)
    assert win.view.frames_painted > 0
    assert "fps" in win.fps_label.text() and "detect" in win.timing_label.text()
    # ... and the stranger stays Unknown, drawn in the Unknown style.
    p = wait_for_payload(qtbot, win, lambda p: p.position in STRANGER and p.result.faces)
    assert names(p) == [None] and win.view.face_labels() == ["Unknown"]
    assert drawn_in(box_edge_colors(win, p), UNKNOWN_COLOR)
    # The log has one row per appearance, not one per frame.
    rows = win.log_panel.rows()
    assert [n for n, _ in rows].count("Obama") == 1
    assert float(dict(rows)["Obama"]) > 0.6  # a clear match's raw similarity

    # Rename in the people manager: the new name appears on the live view.
    people = win.open_people_dialog()
    qtbot.waitUntil(lambda: people.names() == ["Obama"], timeout=30000)
    people.select("Obama")
    monkeypatch.setattr(people, "_ask_new_name", lambda old: "Barack Obama")
    qtbot.mouseClick(people.rename_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: people.names() == ["Barack Obama"], timeout=30000)
    wait_for_payload(qtbot, win, lambda p: "Barack Obama" in names(p))

    # Delete (confirmed): his frames are Unknown again.
    people.select("Barack Obama")
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(people.delete_button, Qt.MouseButton.LeftButton)
    assert asked, "delete must ask for confirmation"
    qtbot.waitUntil(lambda: people.names() == [], timeout=30000)
    assert win.people_label.text() == "0 people enrolled"
    seen: list[FramePayload] = []
    win.worker.result_ready.connect(seen.append)
    wait_for_payload(qtbot, win, lambda p: any(s.position in OBAMA and s.result.faces
                                               for s in seen) and p.position > 30)
    assert all(f.name is None for s in seen for f in s.result.faces)
    people.close()


def test_enroll_dialog_rejects_files_with_reasons(qtbot, make_window, tmp_path, paths):  # noqa: ANN001
    from app.pipeline.storage.store import FaceStore
    from tests.conftest import DEEPFACE

    win = make_window(None, wait_ready=True)
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    dlg.add_files([FR / "obama.jpg", notes, blank, DEEPFACE / "couple.jpg"])
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) + len(dlg.rejected) == 4 and not dlg.busy(),
                    timeout=30000)
    assert [a.label for a in dlg.accepted_faces] == ["obama.jpg"]
    reasons = sorted(dlg.rejected)
    assert reasons[0].startswith("blank.png: no face found")
    assert reasons[1].startswith("couple.jpg: 2 faces")
    assert reasons[2].startswith("notes.jpg: ")
    assert dlg.rejected_list.count() == 3 and dlg.rejected_list.isVisible()
    assert "not used" in dlg.status.text()
    # Adding the same file twice is refused too.
    dlg.add_files([FR / "obama.jpg"])
    assert dlg.rejected[-1] == "obama.jpg: already added"
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        dlg.save_button.click()
    with FaceStore(paths.db) as store:
        people = store.people()
    assert [(p.name, p.face_count) for p in people] == [("Obama", 1)]

    # The name now exists: adding to him must be an explicit choice.
    qtbot.waitUntil(lambda: len(win.people) == 1, timeout=30000)
    dlg = win.open_enroll_dialog()
    qtbot.keyClicks(dlg.name_edit, "obama")
    assert dlg.existing_person() is not None
    assert dlg.add_existing_check.isVisible() and not dlg.add_existing_check.isChecked()
    dlg.add_files([FR / "obama2.jpg"])
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) == 1 and not dlg.busy(), timeout=30000)
    assert not dlg.save_button.isEnabled()
    assert "name is taken" in dlg.save_hint.text()
    dlg.add_existing_check.setChecked(True)
    assert dlg.save_button.isEnabled()
    with qtbot.waitSignal(dlg.saved, timeout=30000) as blocker:
        dlg.save_button.click()
    assert (blocker.args[0].name, blocker.args[0].face_count) == ("Obama", 2)


def test_enroll_dialog_snapshots(qtbot, make_window):  # noqa: ANN001
    from app.pipeline.imageio import load_image
    from tests.conftest import DEEPFACE
    from tests.video import fit

    win = make_window(None)
    frame: list[np.ndarray | None] = [None]
    from app.ui.enroll_dialog import EnrollDialog

    dlg = EnrollDialog(win.worker, [], win, frame_provider=lambda: frame[0])
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.name_edit.setText("Biden")
    # No live picture yet.
    dlg.snapshot_button.click()
    assert "No live picture" in dlg.status.text()
    # A frame without a face, then one with two faces: refused, with the reason.
    frame[0] = np.full((480, 640, 3), 90, np.uint8)
    dlg.snapshot_button.click()
    qtbot.waitUntil(lambda: "no face found" in dlg.status.text(), timeout=30000)
    frame[0] = fit(load_image(DEEPFACE / "couple.jpg"), (640, 480))
    dlg.snapshot_button.click()
    qtbot.waitUntil(lambda: "faces in view; exactly one is needed" in dlg.status.text(),
                    timeout=30000)
    assert not dlg.accepted_faces and not dlg.save_button.isEnabled()
    # A usable face is accepted and shown as a thumbnail that can be removed.
    frame[0] = fit(load_image(FR / "biden.jpg"), (640, 480))
    dlg.snapshot_button.click()
    dlg.snapshot_button.click()
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) == 2 and not dlg.busy(), timeout=30000)
    assert dlg.thumbs.count() == 2 and dlg.save_button.isEnabled()
    dlg.thumbs.item(0).setSelected(True)
    dlg.remove_button.click()
    assert dlg.thumbs.count() == 1 and len(dlg.accepted_faces) == 1
    dlg.thumbs.item(0).setSelected(True)
    dlg.remove_selected()
    assert not dlg.accepted_faces and not dlg.save_button.isEnabled()
    dlg.reject()


def test_video_ended_state_and_replay(qtbot, make_window, tmp_path):  # noqa: ANN001
    clip = write_slideshow(tmp_path / "short.avi", [FR / "biden.jpg"], frames_each=6)
    win = make_window(clip)
    qtbot.waitUntil(lambda: win.view.message.isVisible()
                    and win.view.message.title.text() == "Video ended", timeout=30000)
    assert win.view.payload is not None and win.view.dimmed
    assert win.start_action.isEnabled() and not win.stop_action.isEnabled()
    with qtbot.waitSignal(win.worker.source_opened, timeout=30000):
        win.view.message_button("Replay").click()
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Video ended"
                    and win.view.message.isVisible(), timeout=30000)


def test_stop_and_start(qtbot, make_window, face_video):  # noqa: ANN001
    win = make_window(face_video)
    qtbot.waitUntil(lambda: win.playing and win.view.payload is not None, timeout=30000)
    with qtbot.waitSignal(win.worker.source_closed, timeout=30000):
        win.stop_action.trigger()
    assert win.view.message.title.text() == "Stopped" and not win.playing
    with qtbot.waitSignal(win.worker.source_opened, timeout=30000):
        win.view.message_button("Start").click()
    assert win.playing and not win.view.message.isVisible()


def test_no_camera_offers_video_file(qtbot, make_window, face_video, monkeypatch):  # noqa: ANN001
    monkeypatch.setattr("app.ui.worker.list_cameras", lambda: [])
    win = make_window(None)
    qtbot.waitUntil(lambda: win.view.message.title.text() == "No camera found", timeout=30000)
    assert "No camera found" in win.source_label.text()
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(face_video), "")))
    win.view.message_button("Open video file…").click()
    qtbot.waitUntil(lambda: win.view.payload is not None, timeout=30000)
    assert not win.view.message.isVisible()


def test_missing_camera_index(qtbot, make_window):  # noqa: ANN001
    win = make_window("7")
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Camera not available",
                    timeout=30000)
    assert "camera 7" in win.view.message.text.text()
    assert "Open video file…" in win.view.message.buttons
    assert not win.playing


def test_model_error_state(qtbot, make_window, face_video, tmp_path, monkeypatch):  # noqa: ANN001
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("FACEREC_MODELS_DIR", str(empty))
    win = make_window(face_video, wait_ready=False)
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Recognition could not start",
                    timeout=30000)
    text = win.view.message.text.text()
    assert "model file missing" in text and str(win.log_path) in text
    qtbot.waitUntil(lambda: not win.worker.isRunning(), timeout=30000)
    assert not win.enroll_action.isEnabled() and not win.people_action.isEnabled()
    # Jobs sent to a dead worker are answered, not left hanging.
    errors = []
    win.worker.call(lambda rec, reply: None, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=30000)
    assert "model file missing" in errors[0]


def test_close_stops_worker_and_remembers_geometry(qtbot, paths, face_video):  # noqa: ANN001
    from app.ui.main_window import MainWindow

    win = MainWindow(paths, str(face_video))
    win.resize(720, 520)
    win.show()
    qtbot.waitUntil(lambda: win.view.payload is not None, timeout=30000)
    worker = win.worker
    win.close()
    assert not worker.isRunning()
    assert (paths.root / "ui.ini").is_file()
    win.deleteLater()

    again = MainWindow(paths, str(face_video))
    qtbot.addWidget(again, before_close_func=lambda w: w.shutdown())
    assert (again.width(), again.height()) == (720, 520)


def test_settings_dialog_saves_and_applies(qtbot, make_window, paths):  # noqa: ANN001
    from app.config import DEFAULT_FALSE_ACCEPT
    from app.pipeline.recognition.decision import load_calibration

    win = make_window(None)
    dlg = win.open_settings_dialog()
    assert dlg.strictness.currentData() == DEFAULT_FALSE_ACCEPT
    assert "About 1 stranger in 200 may be named (default)" == dlg.strictness.currentText()
    # The raw score behind the strictness, for experts.
    cal = load_calibration()
    assert f"{cal.threshold(1, DEFAULT_FALSE_ACCEPT):.3f}" in dlg.rule_hint.text()
    dlg.strictness.setCurrentIndex(dlg.strictness.findData(0.001))
    assert f"{cal.threshold(1, 0.001):.3f}" in dlg.rule_hint.text()
    dlg.min_similarity.setValue(0.3)
    dlg.search.setCurrentIndex(dlg.search.findData("exact"))
    dlg.threads.setValue(1)
    dlg.retention.setValue(7)
    dlg.show_candidates.setChecked(True)
    dlg.accept()
    saved = Settings.load(paths.settings)
    assert (saved.false_accept, saved.min_similarity, saved.search, saved.threads) == \
        (0.001, 0.3, "exact", 1)
    assert (saved.log_retention_days, saved.show_candidates) == (7, True)
    assert win.view.show_candidates
    got = []
    win.worker.call(lambda rec, reply: (rec.rule.target, rec.rule.min_similarity),
                    on_done=got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=30000)
    assert got == [(0.001, 0.3)]


def test_settings_dialog_keeps_the_shared_gallery_url_without_showing_its_password(
        qtbot, make_window, paths):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_settings_dialog()
    group = dlg.findChild(QWidget, "sharedGalleryGroup")
    assert group is not None and dlg.store_url.text() == ""
    dlg.store_url.setText("postgresql://desk:s3cret@db.example/facerec")
    dlg.accept()
    assert Settings.load(paths.settings).store == "postgresql://desk:s3cret@db.example/facerec"
    dlg = win.open_settings_dialog()
    assert dlg.store_url.text() == "postgresql://desk:***@db.example/facerec"
    dlg.threads.setValue(1)
    dlg.accept()  # the URL left as shown: the saved password is kept
    assert Settings.load(paths.settings).store == "postgresql://desk:s3cret@db.example/facerec"
    dlg = win.open_settings_dialog()
    dlg.store_url.clear()
    dlg.accept()
    assert Settings.load(paths.settings).store == ""


def test_window_on_a_shared_gallery_says_when_it_is_offline(qtbot, make_window, paths,  # noqa: ANN001
                                                             private_server, monkeypatch):
    from app.pipeline.storage.store import NewFace

    monkeypatch.setenv("FACEREC_STORE", private_server.url("gallery"))
    win = make_window(None)
    assert win.store_label.isHidden()
    private_server.stop()
    qtbot.waitUntil(lambda: not win.store_label.isHidden(), timeout=30000)
    assert win.store_label.text().startswith("shared gallery offline since ")
    errors = []
    win.worker.call(lambda rec, reply: rec.enroll("Ada", [NewFace(np.ones(512, np.float32))]),
                    on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=30000)
    assert "offline since" in errors[0] and "nothing was saved" in errors[0]
    private_server.start()
    qtbot.waitUntil(lambda: win.store_label.isHidden(), timeout=30000)
    done = []
    win.worker.call(lambda rec, reply: rec.enroll("Ada", [NewFace(np.ones(512, np.float32))]).name,
                    on_done=done.append, on_error=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert done == ["Ada"]


def test_log_export_csv(qtbot, make_window, paths, face_video, tmp_path, monkeypatch):  # noqa: ANN001
    """Every row, owner-only, and no cell a spreadsheet would run as a formula."""
    import time
    import uuid

    from app.pipeline.storage.store import FaceStore, NewFace, Sighting

    hostile, source = '=HYPERLINK("http://evil.example","click")', "@SUM(1+1)*cmd|' /C calc'!A0"
    with FaceStore(paths.db) as store:  # a person far from every face in the video
        person_id, _ = store.add_faces(hostile, [NewFace(np.full(512, 512 ** -0.5, np.float32))])
        store.record_sightings([Sighting(uuid.uuid4().hex, person_id, time.time() - 60,
                                         time.time() - 50, 5, 0.9, source)])
    win = make_window(face_video)
    qtbot.waitUntil(lambda: win.log_panel.table.rowCount() >= 2, timeout=30000)
    out = tmp_path / "log.csv"
    monkeypatch.setattr(win.log_panel, "_ask_csv_path", lambda: str(out))
    win.export_action.trigger()
    qtbot.waitUntil(lambda: "Exported" in win.log_panel.summary.text(), timeout=30000)
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[0] == ["time", "name", "best_similarity", "seconds_seen", "source"]
    assert any(r[1] == "Unknown" and r[4] == face_video.name for r in rows[1:])
    assert ["'" + hostile, "0.900", "10.0", "'" + source] in [r[1:] for r in rows[1:]]
    assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("via_cli", [True, False])
def test_entry_points_open_and_quit(qtbot, paths, face_video, monkeypatch, capsys, via_cli):  # noqa: ANN001
    """``facerec -v gui --source VIDEO`` and ``facerec-gui -v`` open the window and exit 0;
    -v shows the log's INFO lines on the console, as for every other command."""
    monkeypatch.setenv("FACEREC_QUIT_AFTER", "1.5")
    if via_cli:
        from app.cli import main

        code = main(["--data-dir", str(paths.root), "-v", "gui", "--source", str(face_video)])
    else:
        from app.ui.app import main

        code = main(["--data-dir", str(paths.root), "-v", "--source", str(face_video)])
    assert code == 0
    assert "facerec: INFO: facerec" in capsys.readouterr().err  # "... GUI starting"


class FakeCamera:
    """A live source that delivers a few frames, then is unplugged."""

    frames_before_loss = 8

    def __init__(self, spec, width=None, height=None) -> None:  # noqa: ANN001
        from app.pipeline.recognition.sources import SourceSpec

        self.spec = spec if isinstance(spec, SourceSpec) else SourceSpec.parse(spec)
        self.fps, self.is_live, self.n = 30.0, True, 0

    def read(self) -> np.ndarray:
        import time

        from app.pipeline.errors import SourceError

        self.n += 1
        if self.n > self.frames_before_loss:
            raise SourceError(f"{self.spec.describe()}: lost (no frames)")
        time.sleep(0.03)
        return np.full((240, 320, 3), 90, np.uint8)

    def close(self) -> None:
        pass


def test_camera_lost_offers_retry_and_another_source(qtbot, make_window, monkeypatch):  # noqa: ANN001
    monkeypatch.setattr("app.ui.worker.list_cameras", lambda: [0])
    monkeypatch.setattr("app.ui.worker.VideoSource", FakeCamera)
    win = make_window(None)
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Camera lost", timeout=30000)
    assert win.view.payload is not None and win.view.payload.live
    assert {"Retry", "Choose another…", "Open video file…"} <= set(win.view.message.buttons)
    assert "camera 0: lost" in win.view.message.text.text()
    with qtbot.waitSignal(win.worker.source_opened, timeout=30000):
        win.view.message_button("Retry").click()
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Camera lost"
                    and win.view.message.isVisible(), timeout=30000)


def test_store_error_state(qtbot, make_window, paths):  # noqa: ANN001
    paths.db.write_bytes(b"this is not a database" * 100)
    win = make_window(None, wait_ready=False)
    qtbot.waitUntil(lambda: win.view.message.title.text() == "Recognition could not start",
                    timeout=30000)
    text = win.view.message.text.text()
    assert "damaged" in text and str(win.log_path) in text
