"""The enrollment dialog: same-person flags, never losing faces, keys and drag and drop."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.pipeline.storage.store import FaceStore
from tests.conftest import DEEPFACE, FR


def checked(qtbot, dlg, n: int) -> None:  # noqa: ANN001
    """Wait until *n* faces are accepted or rejected and every check has answered."""
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) + len(dlg.rejected) >= n and not dlg.busy(),
                    timeout=30000)


def item_of(dlg, label: str):  # noqa: ANN001, ANN201
    for i in range(dlg.thumbs.count()):
        item = dlg.thumbs.item(i)
        if label in item.text():
            return item
    raise AssertionError(f"no thumbnail {label}")


def test_a_flagged_photo_is_marked_and_saving_waits_for_the_users_choice(qtbot, make_window,  # noqa: ANN001
                                                                          paths):
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Lin Manuel")
    dlg.add_files([FR / "obama.jpg", FR / "obama2.jpg", FR / "biden.jpg"])
    checked(qtbot, dlg, 3)
    # The odd one out is flagged on its thumbnail, with its similarity and the reason.
    flagged = [a for a in dlg.accepted_faces if a.key in dlg.flags]
    assert [a.label for a in flagged] == ["biden.jpg"]
    reason = dlg.flags[flagged[0].key].reason
    assert reason.startswith("does not look like Lin Manuel's other 2 faces (similarity 0.")
    item = item_of(dlg, "biden.jpg")
    assert item.text() == "⚠ biden.jpg" and reason in item.toolTip()
    assert dlg.flag_box.isVisible() and reason in dlg.flag_label.text()
    assert not dlg.save_button.isEnabled()
    assert dlg.save_hint.text() == "1 face is flagged: drop it or keep it on purpose."
    # Drop it: the others are compared again without it, and can be saved.
    dlg.drop_button.click()
    qtbot.waitUntil(lambda: not dlg.busy(), timeout=30000)
    assert [a.label for a in dlg.accepted_faces] == ["obama.jpg", "obama2.jpg"]
    assert dlg.flags == {} and not dlg.flag_box.isVisible() and dlg.save_button.isEnabled()
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        dlg.save_button.click()

    # Someone already enrolled, under another name: flagged; kept on purpose, it is saved.
    qtbot.waitUntil(lambda: len(win.people) == 1, timeout=30000)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Barack")
    dlg.add_files([FR / "obama3.jpg"])
    checked(qtbot, dlg, 1)
    (flag,) = dlg.flags.values()
    assert flag.reason.startswith("looks like Lin Manuel, who is already enrolled (similarity 0.")
    assert not dlg.save_button.isEnabled()
    dlg.keep_button.click()
    assert dlg.save_button.isEnabled() and item_of(dlg, "obama3.jpg").text() == "obama3.jpg (kept)"
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        dlg.save_button.click()
    with FaceStore(paths.db) as store:
        assert [(p.name, p.face_count) for p in store.people()] == [("Barack", 1), ("Lin Manuel", 2)]


def test_the_flags_follow_the_name(qtbot, make_window, paths):  # noqa: ANN001
    """Typing another person's name compares the faces with that person's."""
    from app.cli import main

    assert main(["--data-dir", str(paths.root), "enroll", "Jolie", str(DEEPFACE / "img1.jpg"),
                 str(DEEPFACE / "img2.jpg")]) == 0
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    dlg.add_files([FR / "obama.jpg"])
    checked(qtbot, dlg, 1)
    assert dlg.flags == {}
    dlg.name_edit.setText("jolie")
    qtbot.waitUntil(lambda: not dlg.busy() and bool(dlg.flags), timeout=30000)
    (flag,) = dlg.flags.values()
    assert flag.reason.startswith("does not look like Jolie's other 2 faces")
    dlg.accepted_faces.clear()  # let the dialog close without asking
    dlg.reject()


def test_closing_with_unsaved_faces_asks_first(qtbot, make_window, monkeypatch):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    asked: list[int] = []
    answer = [False]
    monkeypatch.setattr(dlg, "_ask_discard", lambda n: asked.append(n) or answer[0])
    qtbot.keyClicks(dlg.name_edit, "Obama")
    dlg.add_files([FR / "obama.jpg", FR / "obama2.jpg"])
    checked(qtbot, dlg, 2)
    # Esc: asked, the user keeps the faces, the dialog stays.
    qtbot.keyClick(dlg.name_edit, Qt.Key.Key_Escape)
    assert asked == [2] and dlg.isVisible() and len(dlg.accepted_faces) == 2
    # Closing the main window asks too; refused, the window stays open.
    win.close()
    assert asked == [2, 2] and win.isVisible() and dlg.isVisible()
    # The window's close button on the dialog: asked again; this time they let them go.
    answer[0] = True
    dlg.close()
    assert asked == [2, 2, 2] and not dlg.isVisible()


def test_closing_without_faces_does_not_ask(qtbot, make_window, monkeypatch):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    monkeypatch.setattr(dlg, "_ask_discard", lambda n: (_ for _ in ()).throw(AssertionError))
    qtbot.keyClick(dlg.name_edit, Qt.Key.Key_Escape)
    assert not dlg.isVisible()


def test_enter_saves_and_never_reopens_the_file_chooser(qtbot, make_window, monkeypatch):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    opened: list[int] = []
    monkeypatch.setattr(dlg, "_ask_files", lambda: opened.append(1) or [str(FR / "obama.jpg")])
    dlg.name_edit.setText("Obama")
    qtbot.mouseClick(dlg.files_button, Qt.MouseButton.LeftButton)  # the chooser "returns"
    assert opened == [1]
    checked(qtbot, dlg, 1)
    dlg.files_button.setFocus()  # where the focus is after the chooser closed
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        qtbot.keyClick(dlg.files_button, Qt.Key.Key_Return)
    assert opened == [1]


def drag_files(widget, files: list[Path]) -> tuple[bool, bool]:  # noqa: ANN001
    """Drag local files onto *widget* and drop them; (enter accepted, drop accepted)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_photos_dropped_on_the_dialog_are_added(qtbot, make_window, tmp_path):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "obama2.jpg").write_bytes((FR / "obama2.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    assert drag_files(dlg, [FR / "obama.jpg", folder]) == (True, True)
    checked(qtbot, dlg, 2)
    assert sorted(a.label for a in dlg.accepted_faces) == ["obama.jpg", "obama2.jpg"]
    # Nothing but a web link: refused at the door.
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/a.jpg")])
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter.ignore()
    QApplication.sendEvent(dlg, enter)
    assert not enter.isAccepted()
    dlg.accepted_faces.clear()
    dlg.reject()


def test_a_snapshot_names_the_stopped_source_and_refuses_motion_blur(qtbot, make_window,  # noqa: ANN001
                                                                     face_video):
    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.quality import blurred_frame
    from tests.video import fit

    win = make_window(face_video)
    qtbot.waitUntil(lambda: win.playing and win.view.payload is not None, timeout=30000)
    with qtbot.waitSignal(win.worker.source_closed, timeout=30000):
        win.stop_action.trigger()
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Biden")
    dlg.snapshot_button.click()
    assert dlg.status.text() == "The video is stopped: press Start (Ctrl+R), then take the snapshot."
    assert not dlg.busy() and not dlg.accepted_faces
    # A face smeared by a quick nod (vertical motion blur 10 % of the frame) is refused.
    sharp = fit(load_image(FR / "biden.jpg"), (640, 480))
    dlg.take_snapshot(blurred_frame(sharp, 40, 90))
    qtbot.waitUntil(lambda: "face too blurred" in dlg.status.text(), timeout=30000)
    dlg.take_snapshot(sharp)
    checked(qtbot, dlg, 1)
    assert len(dlg.accepted_faces) == 1
    dlg.accepted_faces.clear()
    dlg.reject()


def test_an_enrollment_status_says_one_face(qtbot, make_window):  # noqa: ANN001
    win = make_window(None)
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    dlg.add_files([FR / "obama.jpg"])
    checked(qtbot, dlg, 1)
    assert dlg.status.text() == "1 face ready to save."
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        dlg.save_button.click()
    assert win.statusBar().currentMessage() == "Enrolled Obama (1 face)"


def test_no_frame_yet_is_said(qtbot, make_window):  # noqa: ANN001
    win = make_window(None)
    assert win.snapshot_frame() == "No live picture: open a camera or a video first."
    from app.ui.enroll_dialog import EnrollDialog

    dlg = EnrollDialog(win.worker, [], win, frame_provider=lambda: None)
    qtbot.addWidget(dlg)
    dlg.take_snapshot(None)
    assert dlg.status.text() == "No live picture: open a camera or a video first."


def test_the_dialog_matches_names_as_the_store_does(qtbot, make_window):  # noqa: ANN001
    """Case and NFC make the same name; "ß" and "SS" do not, as in the store (issue 13)."""
    from app.pipeline.types import Person
    from app.ui.enroll_dialog import EnrollDialog

    win = make_window(None)
    weiss = Person(id=1, name="Anna Weiß", face_count=2, created=0.0)
    dlg = EnrollDialog(win.worker, [weiss], win, frame_provider=lambda: None)
    qtbot.addWidget(dlg)
    dlg.name_edit.setText("anna weiß")
    assert dlg.existing_person() == weiss
    dlg.name_edit.setText("ANNA WEISS")
    assert dlg.existing_person() is None
    assert "already enrolled" not in dlg.name_hint.text()
