"""The live view: corrections from the right-click menu, pause, resume and seek, saving a
frame, full screen, the user guide, the expert label and shortcuts.

``pair_video`` shows Obama (obama3.jpg) and Biden side by side for 20 s, so that tracks
live long enough to be corrected while the video plays.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QContextMenuEvent, QKeySequence
from PySide6.QtWidgets import QApplication

from app.cli import main
from app.pipeline.storage.store import FaceStore
from app.ui.video_view import KNOWN_COLOR
from tests.conftest import FR
from tests.ui.test_main_window import wait_for_payload


def side(payload, left: bool):  # noqa: ANN001, ANN201
    """The face on the left (Obama) or the right (Biden) of a frame."""
    faces = sorted(payload.result.faces, key=lambda f: f.box[0])
    return faces[0] if left else faces[-1]


def two_faces(p) -> bool:  # noqa: ANN001
    return len(p.result.faces) == 2


def test_right_click_corrections_name_the_track_at_once(qtbot, make_window, paths, pair_video,  # noqa: ANN001
                                                        monkeypatch):
    assert main(["--data-dir", str(paths.root), "enroll", "Obama", str(FR / "obama.jpg"),
                 str(FR / "obama2.jpg")]) == 0
    win = make_window(pair_video)
    p = wait_for_payload(qtbot, win, lambda p: two_faces(p) and side(p, True).name == "Obama")
    biden = side(p, False)
    assert biden.name is None
    # A real right-click on Biden's box opens the menu for that face (two faces in view).
    center = win.view.face_center(biden)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, center, win.view.mapToGlobal(center))
    QApplication.sendEvent(win.view, event)
    menu = win.face_menu
    assert menu is not None and menu.isVisible()
    labels = [a.text() for a in menu.actions()]
    assert labels[0].startswith("Unknown") and "This is…" in labels and not any(
        t.startswith("Not ") for t in labels)
    this_is = next(a.menu() for a in menu.actions() if a.text() == "This is…")
    assert [a.text() for a in this_is.actions() if a.text()] == ["Obama", "New person…"]
    menu.close()

    # "This is… → New person…": the face, from that frame, starts Joe Biden; the track
    # shows the name from its next frame on.
    monkeypatch.setattr(win, "_ask_new_person_name", lambda: "Joe Biden")
    seen = []
    win.worker.result_ready.connect(seen.append)
    new = next(a for a in this_is.actions() if a.text() == "New person…")
    new.trigger()
    qtbot.waitUntil(lambda: "Joe Biden" in win.statusBar().currentMessage(), timeout=30000)
    assert win.statusBar().currentMessage() == "Added this face to Joe Biden (1 face)."
    done_at = len(seen)
    p = wait_for_payload(qtbot, win, lambda p: len(seen) > done_at + 2 and two_faces(p))
    after = [f for s in seen[done_at:] for f in s.result.faces if f.track == biden.track]
    assert after and all(f.name == "Joe Biden" for f in after)
    with FaceStore(paths.db) as store:
        (face,) = store.faces_of(store.person("Joe Biden").id)
        assert face.source == "live view"

    # "Not Obama" on the left face: it is shown as Unknown from then on.
    obama = side(win.view.payload, True)
    assert obama.name == "Obama"
    menu = win.build_face_menu(win.view.payload, obama)
    not_obama = next(a for a in menu.actions() if a.text() == "Not Obama")
    mark = len(seen)
    not_obama.trigger()
    qtbot.waitUntil(lambda: "will not be shown" in win.statusBar().currentMessage(), timeout=30000)
    mark = len(seen)
    wait_for_payload(qtbot, win, lambda p: len(seen) > mark + 2)
    assert all(f.name is None for s in seen[mark:] for f in s.result.faces if f.track == obama.track)

    # "This is… → Joe Biden" on Obama's face is flagged: asked; only the name is corrected.
    asked = []
    monkeypatch.setattr(win, "_ask_flagged_correction",
                        lambda name, flag, exists: asked.append(flag.reason) or "rename")
    menu = win.build_face_menu(win.view.payload, side(win.view.payload, True))
    this_is = next(a.menu() for a in menu.actions() if a.text() == "This is…")
    next(a for a in this_is.actions() if a.text() == "Joe Biden").trigger()
    qtbot.waitUntil(lambda: "shown as Joe Biden" in win.statusBar().currentMessage(), timeout=30000)
    assert asked and "Obama" in asked[0]
    mark = len(seen)
    wait_for_payload(qtbot, win, lambda p: len(seen) > mark + 2)
    assert all(f.name == "Joe Biden" for s in seen[mark:] for f in s.result.faces
               if f.track == obama.track)
    with FaceStore(paths.db) as store:  # nothing was added to Joe Biden
        assert {p.name: p.face_count for p in store.people()} == {"Joe Biden": 1, "Obama": 2}


def test_pause_resume_and_seek_a_video_file(qtbot, make_window, pair_video):  # noqa: ANN001
    win = make_window(pair_video)
    wait_for_payload(qtbot, win, lambda p: p.position > 5)
    assert win.seek_bar.isVisible() and win.pause_action.isEnabled()
    with qtbot.waitSignal(win.worker.paused_changed, timeout=30000):
        win.pause_action.trigger()
    assert win.source_state == "paused" and win.pause_action.text() == "Resume"
    at = win.view.payload.position
    qtbot.wait(600)  # paused: no frame follows
    assert win.view.payload.position == at
    # Seek while paused: the frame sought is shown, and it stays paused.
    win.seek_bar.seek_requested.emit(200)
    qtbot.waitUntil(lambda: win.view.payload.position == 200, timeout=30000)
    assert win.view.payload.paused and win.seek_bar.slider.value() == 200
    assert win.seek_bar.time_label.text().startswith("0:16 / 0:20")
    # Resume: it plays on from there, not from the start.
    win.pause_action.trigger()
    wait_for_payload(qtbot, win, lambda p: p.position > 200 and not p.paused)
    # Stop, then Start: the file continues where it was stopped.
    with qtbot.waitSignal(win.worker.paused_changed, timeout=30000):
        win.toggle_pause()
    win.seek_bar.seek_requested.emit(60)
    qtbot.waitUntil(lambda: win.view.payload.position == 60, timeout=30000)
    with qtbot.waitSignal(win.worker.source_closed, timeout=30000):
        win.stop_action.trigger()
    assert win.view.message.title.text() == "Stopped" and "0:05" in win.view.message.text.text()
    with qtbot.waitSignal(win.worker.source_opened, timeout=30000):
        win.view.message_button("Start").click()
    p = wait_for_payload(qtbot, win, lambda p: True)
    assert 60 <= p.position < 200


def test_the_frame_is_saved_with_its_boxes(qtbot, make_window, paths, pair_video, tmp_path):  # noqa: ANN001
    assert main(["--data-dir", str(paths.root), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    win = make_window(pair_video)
    p = wait_for_payload(qtbot, win, lambda p: two_faces(p) and side(p, True).name == "Obama")
    win.toggle_pause()
    qtbot.waitUntil(lambda: win.source_state == "paused", timeout=30000)
    p = win.view.payload
    out = win.save_frame(tmp_path / "frame")
    assert out == tmp_path / "frame.png" and win.save_frame_action.shortcut() == QKeySequence.fromString(
        QKeySequence(QKeySequence.StandardKey.Save).toString())
    assert out.stat().st_mode & 0o777 == 0o600  # it shows faces and names
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == p.frame.shape  # the frame's own resolution
    x, y, w, h = side(p, True).box
    edge = image[y, x + w // 2:x + w - 4].astype(int)  # the top edge of Obama's box
    green = np.array([KNOWN_COLOR.red(), KNOWN_COLOR.green(), KNOWN_COLOR.blue()])
    assert (np.abs(edge - green).max(axis=1) < 60).mean() > 0.5
    assert not np.array_equal(image, p.frame)


def test_full_screen_guide_settings_key_and_expert_label(qtbot, make_window, paths, pair_video):  # noqa: ANN001
    assert main(["--data-dir", str(paths.root), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    win = make_window(pair_video)
    # F11 and Esc.
    assert win.fullscreen_action.shortcut() == QKeySequence("F11")
    win.fullscreen_action.trigger()
    qtbot.waitUntil(win.isFullScreen, timeout=30000)
    from PySide6.QtCore import Qt

    qtbot.keyClick(win, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not win.isFullScreen(), timeout=30000)
    # Ctrl+, opens the settings on every platform.
    assert QKeySequence("Ctrl+,") in win.settings_action.shortcuts()
    # Help → User guide: enroll, correct, tune strictness, back up.
    guide = win.open_guide()
    text = guide.text.toPlainText()
    for topic in ("Enroll someone", "Correct a mistake", "Tune how strict recognition is",
                  "Back up", "facerec backup"):
        assert topic in text
    guide.close()
    # Expert setting: an Unknown face shows its best candidate and score.
    p = wait_for_payload(qtbot, win, lambda p: two_faces(p) and side(p, False).name is None
                         and side(p, False).candidate == "Obama")
    assert "Unknown" in win.view.face_labels()
    settings = win.settings
    settings.show_candidates = True
    win.apply_settings(settings)
    label = [t for t in win.view.face_labels() if t.startswith("Unknown")][0]
    sim = side(p, False).similarity
    assert label == f"Unknown · Obama? {sim:.2f}" and not math.isnan(sim)


def test_menu_off_any_face_offers_the_frame_actions(qtbot, make_window, pair_video):  # noqa: ANN001
    win = make_window(pair_video)
    p = wait_for_payload(qtbot, win, two_faces)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, QPoint(2, 2),
                              win.view.mapToGlobal(QPoint(2, 2)))
    assert event.type() == QEvent.Type.ContextMenu
    QApplication.sendEvent(win.view, event)
    labels = [a.text() for a in win.face_menu.actions()]
    assert "This is…" not in labels and "Save frame as PNG…" in labels
    win.face_menu.close()
    assert p is not None
