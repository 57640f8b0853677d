"""The window under bad input and outside changes: a message, and the app keeps running."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.pipeline.storage.store import FaceStore
from tests.conftest import DEEPFACE, FR
from tests.corpus import ACCEPT, CORPUS, build
from tests.ui.test_main_window import OBAMA, names, wait_for_payload


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The face video's people, 50 s long: a file plays in real time, and the 6 s clip can
    end while a loaded machine is still checking the photos (then nothing is painted)."""
    from tests.video import write_slideshow

    path = tmp_path_factory.mktemp("long") / "people.avi"
    return write_slideshow(path, [FR / "obama3.jpg", FR / "biden.jpg", DEEPFACE / "img3.jpg"],
                           frames_each=200, size=(640, 480), fps=12.0)


def test_bad_photo_corpus_in_the_enroll_dialog(qtbot, make_window, long_video, tmp_path, paths):  # noqa: ANN001
    win = make_window(long_video)
    files = [build(kind, tmp_path) for kind in sorted(CORPUS)]
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    dlg.add_files(files)
    qtbot.waitUntil(lambda: len(dlg.accepted_faces) + len(dlg.rejected) == len(files)
                    and not dlg.busy(), timeout=60000)
    refused = {kind for kind in CORPUS if CORPUS[kind][2] != ACCEPT}
    rejected_names = {r.split(": ", 1)[0] for r in dlg.rejected}
    assert {CORPUS[kind][0] for kind in refused} <= rejected_names  # each with its reason
    assert all(": " in r and r.split(": ", 1)[1] for r in dlg.rejected)
    assert len(dlg.accepted_faces) >= 8  # the awkward-but-valid formats are usable
    # The live view kept running throughout.
    painted = win.view.frames_painted

    def painting() -> bool:
        msg = win.view.message
        if msg.isVisible() and msg.title.text() == "Video ended":
            msg.buttons["Replay"].click()  # the checks took longer than the clip
        return win.view.frames_painted > painted + 5

    qtbot.waitUntil(painting, timeout=30000)
    assert win.worker.isRunning()
    # Every accepted file is Obama except big.jpg (another person's photo): it alone is
    # flagged by the same-person check, and Save waits until it is dropped.
    flagged = [a.label for a in dlg.accepted_faces if a.key in dlg.flags]
    assert flagged == ["big.jpg"] and not dlg.save_button.isEnabled()
    dlg.drop_button.click()
    qtbot.waitUntil(lambda: not dlg.busy() and dlg.save_button.isEnabled(), timeout=30000)
    with qtbot.waitSignal(dlg.saved, timeout=30000):
        dlg.save_button.click()
    with FaceStore(paths.db) as store:
        assert [(p.name, p.face_count) for p in store.people()] == [
            ("Obama", len(dlg.accepted_faces))]


def test_enrollment_by_another_process_reaches_the_running_window(qtbot, make_window, face_video,  # noqa: ANN001
                                                                  paths, capsys):
    win = make_window(face_video)
    p = wait_for_payload(qtbot, win, lambda p: p.position in OBAMA and p.result.faces)
    assert names(p) == [None]
    # The command line, with its own connection to the same store, enrolls Obama.
    assert main(["--data-dir", str(paths.root), "enroll", "Obama", str(FR / "obama.jpg")]) == 0
    wait_for_payload(qtbot, win, lambda p: p.position in OBAMA and "Obama" in names(p),
                     timeout=30000)
    qtbot.waitUntil(lambda: win.people_label.text() == "1 person enrolled", timeout=30000)


def test_no_display_is_a_message_not_an_abort(monkeypatch, paths, capsys):  # noqa: ANN001
    """Without a screen Qt would abort the process; the app says what to do instead."""
    import sys

    from app.ui.app import run

    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    assert run(paths) == 1
    assert "xvfb-run" in capsys.readouterr().err


def test_enroll_dialog_after_recognition_stopped(qtbot, make_window):  # noqa: ANN001
    """With the worker gone, photos are refused with a reason and the dialog stays usable."""
    win = make_window(None)
    assert win.worker.stop()
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText("Obama")
    dlg.add_files([FR / "obama.jpg"])
    qtbot.waitUntil(lambda: len(dlg.rejected) == 1 and not dlg.busy(), timeout=30000)
    assert dlg.rejected[0].split(": ", 1)[1]
    assert not dlg.save_button.isEnabled()
    dlg.close()
