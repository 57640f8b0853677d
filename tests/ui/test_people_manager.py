"""The people manager: each person's faces, flags, remove and move, search and sort, keys,
drag and drop, and following the store whoever changes it."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.cli import main
from app.config import Settings
from app.pipeline.recognition.recognizer import Recognizer
from app.pipeline.storage.store import FaceStore
from tests.conftest import DEEPFACE, FR
from tests.ui.test_enroll_checks import drag_files


def cli(paths, *args: str) -> None:  # noqa: ANN001
    assert main(["--data-dir", str(paths.root), *map(str, args)]) in (0, 1)


def open_people(qtbot, win, count: int):  # noqa: ANN001, ANN201
    dlg = win.open_people_dialog()
    qtbot.waitUntil(lambda: len(dlg.names()) == count, timeout=30000)
    return dlg


def show_faces_of(qtbot, dlg, name: str, count: int) -> None:  # noqa: ANN001
    dlg.select(name)
    qtbot.waitUntil(lambda: dlg._faces_of == name and len(dlg.faces) == count, timeout=30000)


def test_faces_are_listed_flagged_removed_and_moved(qtbot, make_window, paths, monkeypatch):  # noqa: ANN001
    cli(paths, "enroll", "Obama", FR / "obama.jpg", FR / "obama2.jpg", FR / "obama3.jpg")
    cli(paths, "enroll", "Obama", FR / "biden.jpg", "--force")  # the wrong photo, on purpose
    win = make_window(None)
    dlg = open_people(qtbot, win, 1)
    show_faces_of(qtbot, dlg, "Obama", 4)
    # Each face: thumbnail, source and date; the wrong one is flagged with the reason.
    items = [dlg.face_list.item(i) for i in range(dlg.face_list.count())]
    assert [it.text().split("\n")[0] for it in items] == [
        "obama.jpg", "obama2.jpg", "obama3.jpg", "⚠ biden.jpg"]
    assert all(not it.icon().isNull() and len(it.text().split("\n")) == 2 for it in items)
    biden = dlg.face_ids()[3]
    assert set(dlg.face_flags) == {biden}
    assert "does not look like Obama's other 3 faces" in items[3].toolTip()
    dlg.select_faces([biden])
    assert dlg.face_note.text().startswith("⚠ biden.jpg does not look like Obama's other 3 faces")
    # Move it to a new person: checked first (nobody to compare with: no flag), then moved.
    dlg.move_faces([biden], "Joe Biden")
    qtbot.waitUntil(lambda: dlg.names() == ["Joe Biden", "Obama"] and len(dlg.faces) == 3,
                    timeout=30000)
    assert dlg.face_flags == {}
    # Moving an Obama photo to Biden is flagged: the user is asked, and says no.
    asked = []
    monkeypatch.setattr(dlg, "_confirm_flagged_move", lambda to, reasons: asked.append(reasons))
    obama3 = dlg.face_ids()[2]
    dlg.move_faces([obama3], "Joe Biden")
    qtbot.waitUntil(lambda: bool(asked), timeout=30000)
    (reason,) = asked[0]
    assert reason.startswith(f"face {obama3}: looks more like Obama (similarity 0.")
    assert "than like Joe Biden (" in reason
    # Remove one face with the Delete key (confirmed).
    confirmed = []
    monkeypatch.setattr(dlg, "_confirm_remove_faces", lambda ids: confirmed.append(list(ids)) or True)
    dlg.select_faces([obama3])
    dlg.face_list.setFocus()
    qtbot.keyClick(dlg.face_list, Qt.Key.Key_Delete)
    assert confirmed == [[obama3]]
    qtbot.waitUntil(lambda: len(dlg.faces) == 2, timeout=30000)
    with FaceStore(paths.db) as store:
        assert [(p.name, p.face_count) for p in store.people()] == [("Joe Biden", 1), ("Obama", 2)]
    dlg.close()


def test_people_can_be_searched_sorted_and_deleted_with_the_delete_key(qtbot, make_window, paths,  # noqa: ANN001
                                                                       monkeypatch):
    cli(paths, "enroll", "Obama", FR / "obama.jpg", FR / "obama2.jpg", FR / "obama3.jpg")
    cli(paths, "enroll", "Angelina Jolie", DEEPFACE / "img1.jpg", DEEPFACE / "img2.jpg")
    cli(paths, "enroll", "Joe Biden", FR / "biden.jpg")
    win = make_window(None)
    dlg = open_people(qtbot, win, 3)
    assert dlg.shown_names() == ["Angelina Jolie", "Joe Biden", "Obama"]
    dlg.sort_combo.setCurrentText("Most faces")
    assert dlg.shown_names() == ["Obama", "Angelina Jolie", "Joe Biden"]
    dlg.sort_combo.setCurrentText("Newest")
    assert dlg.shown_names() == ["Joe Biden", "Angelina Jolie", "Obama"]
    qtbot.keyClicks(dlg.search_edit, "bi")
    assert dlg.shown_names() == ["Joe Biden"]
    dlg.search_edit.setText("nobody")
    assert dlg.shown_names() == [] and dlg.no_match_label.isVisible()
    dlg.search_edit.clear()
    # Delete in the list deletes the selected person, after asking.
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    dlg.select("Joe Biden")
    dlg.list.setFocus()
    qtbot.keyClick(dlg.list, Qt.Key.Key_Delete)
    assert asked and asked[0].startswith("Delete Joe Biden and their 1 face?")
    qtbot.waitUntil(lambda: dlg.names() == ["Angelina Jolie", "Obama"], timeout=30000)
    dlg.close()


def test_the_manager_follows_changes_made_elsewhere(qtbot, make_window, paths, monkeypatch):  # noqa: ANN001
    """No video playing: the worker still notices the CLI's changes and the list follows."""
    win = make_window(None)
    dlg = open_people(qtbot, win, 0)
    cli(paths, "enroll", "Obama", FR / "obama.jpg")
    qtbot.waitUntil(lambda: dlg.names() == ["Obama"], timeout=30000)
    cli(paths, "enroll", "Obama", FR / "obama2.jpg")
    show_faces_of(qtbot, dlg, "Obama", 2)
    # Renaming a person someone else removed meanwhile: the reason, and the list catches up.
    dlg.select("Obama")
    with FaceStore(paths.db) as store:
        store.remove("Obama")
    monkeypatch.setattr(dlg, "_ask_new_name", lambda old: "Barack Obama")
    dlg.rename_button.click()
    qtbot.waitUntil(lambda: "No person named 'Obama'" in dlg.status.text(), timeout=30000)
    qtbot.waitUntil(lambda: dlg.names() == [], timeout=30000)
    assert dlg.empty_label.isVisible()
    dlg.close()


def test_photos_dropped_on_the_manager_go_to_the_selected_person(qtbot, make_window, paths):  # noqa: ANN001
    cli(paths, "enroll", "Obama", FR / "obama.jpg")
    win = make_window(None)
    dlg = open_people(qtbot, win, 1)
    dlg.select("Obama")
    assert drag_files(dlg, [FR / "obama2.jpg"]) == (True, True)
    enroll = win.enroll_dialog
    assert enroll is not None and enroll.name_edit.text() == "Obama"
    assert enroll.add_existing_check.isChecked()
    qtbot.waitUntil(lambda: len(enroll.accepted_faces) == 1 and not enroll.busy(), timeout=30000)
    with qtbot.waitSignal(enroll.saved, timeout=30000):
        enroll.save_button.click()
    show_faces_of(qtbot, dlg, "Obama", 2)
    dlg.close()


def test_faces_of_an_older_version_are_pointed_out(qtbot, make_window, paths):  # noqa: ANN001
    """People enrolled by an older facerec are marked in the manager and the status bar."""
    with Recognizer.open(paths, Settings()) as rec:
        obama = [rec.prepare_file(FR / n).face for n in ("obama.jpg", "obama2.jpg")]
        biden = rec.prepare_file(FR / "biden.jpg").face
    with FaceStore(paths.db) as store:
        store.add_faces("Obama", [replace(f, embedder="facenet-20180408-int8/crop-1") for f in obama])
        store.add_faces("Joe Biden", [biden])
    win = make_window(None)
    qtbot.waitUntil(lambda: win.outdated_label.isVisible(), timeout=30000)
    assert win.outdated_label.text() == "⚠ 1 person to enroll again"
    assert win.outdated_label.toolTip() == (
        "2 faces of 1 person were enrolled by an older version of facerec and are not used for "
        "recognition; they cannot be recognised at all: enroll them again from photos "
        "(People… shows who).")
    dlg = open_people(qtbot, win, 2)
    rows = {dlg.list.item(i).data(Qt.ItemDataRole.UserRole): dlg.list.item(i)
            for i in range(dlg.list.count())}
    assert rows["Obama"].text().startswith("⚠ Obama\n2 faces")
    assert rows["Obama"].text().endswith("\nall by an older version: enroll again")
    assert "not recognised at all" in rows["Obama"].toolTip()
    assert "⚠" not in rows["Joe Biden"].text()
    assert dlg.status.text().startswith("2 faces of 1 person were enrolled by an older version")
    show_faces_of(qtbot, dlg, "Obama", 2)
    assert all(dlg.face_list.item(i).text().startswith("⚠ ") for i in range(2))
    assert dlg.face_note.text().startswith("⚠ 2 faces were enrolled by an older version of facerec")
    # New photos, then the old faces removed: nothing left to say.
    cli(paths, "enroll", "Obama", FR / "obama3.jpg")
    with FaceStore(paths.db) as store:
        old = [f.id for f in store.faces_of(store.person("Obama").id)
               if f.embedder == "facenet-20180408-int8/crop-1"]
    assert len(old) == 2
    cli(paths, "remove-face", *old)
    qtbot.waitUntil(lambda: not win.outdated_label.isVisible(), timeout=30000)
    qtbot.waitUntil(lambda: "⚠" not in "".join(dlg.list.item(i).text()
                                               for i in range(dlg.list.count())), timeout=30000)
    assert dlg.status.text() == ""
    dlg.close()
