"""Write the README screenshots of the desktop app.

Run it under Xvfb so the pictures show the real window (the xcb platform plugin):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python packaging/screenshots.py

It starts the app on a temporary data directory, enrolls people from the shared test
photos through the real enrollment dialog, plays a video made from other shared photos
(a known face beside a stranger) and saves:

- resources/screenshots/main_window.png: named boxes and an Unknown box, the log panel;
- resources/screenshots/enroll_dialog.png: accepted thumbnails, a photo of someone else
  flagged by the same-person check (selected, with its reason), and rejected files;
- resources/screenshots/correction_menu.png: the right-click menu on an Unknown face,
  "This is…" open on the people;
- resources/screenshots/people_manager.png: the people list and one person's faces, a
  wrong photo among them flagged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TESTDATA = Path(os.environ.get("FACEREC_TESTDATA", REPO.parent / "shared" / "testdata"))
FR = TESTDATA / "face_recognition"
DEEPFACE = TESTDATA / "deepface"
OUT = REPO / "resources" / "screenshots"


def portrait(path: Path, flip: bool = False, size: tuple[int, int] = (426, 560)):  # noqa: ANN201
    """A head-and-shoulders crop of a photo, fitted into *size* (width, height)."""
    import cv2

    from app.pipeline.imageio import load_image
    from app.pipeline.recognition.detector import FaceDetector
    from tests.video import fit

    rgb = load_image(path)
    if flip:
        rgb = cv2.flip(rgb, 1)
    detector = FaceDetector(0.5)
    try:
        x, y, w, h = detector.detect(rgb)[0].box
    finally:
        detector.close()
    cw = int(2.4 * w)
    ch = int(cw * size[1] / size[0])
    x0 = max(0, x + w // 2 - cw // 2)
    y0 = max(0, y - int(0.8 * h))
    return fit(rgb[y0:y0 + ch, x0:x0 + cw], size)


def make_video(folder: Path) -> Path:
    """A 1280x560 clip: Obama (obama3.jpg), a mirrored Biden and a stranger side by side."""
    import cv2
    import numpy as np

    from tests.video import write_slideshow

    panels = [portrait(FR / "obama3.jpg"), portrait(FR / "biden.jpg", flip=True),
              portrait(DEEPFACE / "img3.jpg")]
    canvas = np.full((560, 1280, 3), 40, np.uint8)
    for i, panel in enumerate(panels):
        canvas[:, 2 + i * 426:2 + (i + 1) * 426] = panel
    still = folder / "group.png"
    cv2.imwrite(str(still), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return write_slideshow(folder / "group.avi", [still], frames_each=240, size=(1280, 560),
                           fps=12.0)


def no_face_photo(folder: Path) -> Path:
    """A photo without a face (a gradient 'landscape'), to show a rejection."""
    import numpy as np
    from PIL import Image

    y = np.linspace(0, 1, 300)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - y) + np.array([60, 140, 70]) * y).astype(np.uint8)
    path = folder / "landscape.png"
    Image.fromarray(np.repeat(sky, 400, axis=1)).save(path)
    return path


def wait_until(app, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:  # noqa: ANN001
    """Run the event loop until *cond* holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: timed out waiting for {what or cond}")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float) -> None:  # noqa: ANN001
    """Let the app run (repaint, animate) for a moment."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def save(widget, name: str) -> Path:  # noqa: ANN001
    path = OUT / name
    if not widget.grab().save(str(path)):
        raise SystemExit(f"screenshots: cannot write {path}")
    print(f"wrote {path}")
    return path


def grab_screen(app, widget, name: str) -> Path:  # noqa: ANN001
    """The screen under *widget*'s window, popup menus included (grab() leaves them out)."""
    path = OUT / name
    g = widget.window().frameGeometry()
    if not app.primaryScreen().grabWindow(0, g.x(), g.y(), g.width(), g.height()).save(str(path)):
        raise SystemExit(f"screenshots: cannot write {path}")
    print(f"wrote {path}")
    return path


def enroll(app, win, name: str, files: list[Path], shot: str | None = None) -> None:  # noqa: ANN001
    dlg = win.open_enroll_dialog()
    dlg.name_edit.setText(name)
    dlg.add_files(files)
    wait_until(app, lambda: len(dlg.accepted_faces) + len(dlg.rejected) == len(files)
               and not dlg.busy(), what=f"checking photos of {name}")
    if shot:
        from PySide6.QtCore import Qt

        flagged = [i for i in range(dlg.thumbs.count())
                   if dlg.thumbs.item(i).data(Qt.ItemDataRole.UserRole) in dlg.flags]
        if not flagged:
            raise SystemExit("screenshots: expected a flagged photo in the enrollment dialog")
        dlg.thumbs.item(flagged[0]).setSelected(True)
        dlg.resize(700, 600)
        settle(app, 0.5)
        save(dlg, shot)
    for _ in list(dlg.flags):  # never save a wrong photo
        dlg.drop_flagged()
    wait_until(app, lambda: not dlg.busy() and dlg.save_button.isEnabled(), what=f"{name} ready")
    saved = []
    dlg.saved.connect(saved.append)
    dlg.save()
    wait_until(app, lambda: bool(saved), what=f"saving {name}")


def main() -> int:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    OUT = args.out.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    if os.environ.get("DISPLAY") and "QT_QPA_PLATFORM" not in os.environ:
        os.environ["QT_QPA_PLATFORM"] = "xcb"
    elif not os.environ.get("DISPLAY"):
        print("screenshots: no DISPLAY; run under xvfb-run for the real window "
              "(falling back to offscreen)", file=sys.stderr)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from app.config import Paths
    from app.log import setup_logging
    from app.ui.app import create_app

    with tempfile.TemporaryDirectory(prefix="facerec-shots-") as tmp:
        tmp_dir = Path(tmp)
        video = make_video(tmp_dir)
        blank = no_face_photo(tmp_dir)
        paths = Paths(tmp_dir / "data").ensure()
        # A person saved earlier with one wrong photo (forced past the checks), for the
        # people manager to show flagged.
        from app.cli import main as cli

        jolie = [str(DEEPFACE / f) for f in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg")]
        if cli(["--data-dir", str(paths.root), "enroll", "Angelina Jolie", *jolie]) or cli(
                ["--data-dir", str(paths.root), "enroll", "Angelina Jolie",
                 str(DEEPFACE / "img13.jpg"), "--force"]):
            raise SystemExit("screenshots: could not enroll the sample gallery")
        setup_logging(paths.logs)
        app = create_app()
        from app.ui.main_window import MainWindow

        win = MainWindow(paths, str(video))
        try:
            shoot(app, win, blank)
        finally:
            win.close()  # stops the worker: never leave its thread running at exit
            app.processEvents()
    return 0


def shoot(app, win, blank: Path) -> None:  # noqa: ANN001
    """Drive the window and save the four screenshots."""
    from PySide6.QtCore import QPoint

    win.resize(1400, 820)
    win.show()
    wait_until(app, lambda: win._ready, what="the models")

    enroll(app, win, "Joe Biden", [FR / "biden.jpg"])
    # Biden's photo among Obama's is flagged: it looks like Joe Biden, enrolled above.
    enroll(app, win, "Barack Obama",
           [FR / "obama.jpg", FR / "obama2.jpg", FR / "biden.jpg", DEEPFACE / "couple.jpg", blank],
           shot="enroll_dialog.png")
    # Start the log and the video afresh: before they were enrolled, Obama and Biden were
    # strangers, and the log says so.
    win.log_panel.clear()
    wait_until(app, lambda: not win.log_panel.sightings(), what="the log cleared")
    win.replay()

    def named_and_unknown() -> bool:
        msg = win.view.message
        if msg.isVisible() and "Replay" in msg.buttons:
            msg.buttons["Replay"].click()
        p = win.view.payload
        if p is None:
            return False
        names = [f.name for f in p.result.faces]
        return {"Barack Obama", "Joe Biden"} <= set(names) and None in names

    try:
        wait_until(app, named_and_unknown, timeout=20, what="named and unknown faces")
    except TimeoutError:
        p = win.view.payload
        print("last faces:", p and [(f.name, round(f.similarity, 2), f.box)
                                    for f in p.result.faces], file=sys.stderr)
        raise
    settle(app, 1.5)  # a few more frames, so fps and the log fill in
    wait_until(app, named_and_unknown, what="named and unknown faces")
    save(win, "main_window.png")

    # Right-click on the stranger, "This is…" open: pause first so the frame holds still.
    win.toggle_pause()
    wait_until(app, lambda: win.source_state == "paused", what="pause")
    payload = win.view.payload
    stranger = next(f for f in payload.result.faces if f.name is None)
    menu = win.build_face_menu(payload, stranger)
    at = win.view.mapToGlobal(win.view.face_center(stranger))
    menu.popup(at)
    this_is = next(a for a in menu.actions() if a.text() == "This is…")
    menu.setActiveAction(this_is)
    settle(app, 0.3)
    sub = this_is.menu()
    sub.popup(menu.geometry().topRight() + QPoint(0, menu.actionGeometry(this_is).top()))
    settle(app, 0.8)
    grab_screen(app, win, "correction_menu.png")
    sub.close()
    menu.close()
    win.toggle_pause()

    people = win.open_people_dialog()
    wait_until(app, lambda: len(people.names()) == 3, what="the people list")
    people.select("Angelina Jolie")
    wait_until(app, lambda: people._faces_of == "Angelina Jolie" and len(people.faces) == 5,
               what="Angelina Jolie's faces")
    people.select_faces(list(people.face_flags))
    people.resize(900, 460)
    settle(app, 0.5)
    save(people, "people_manager.png")
    people.close()


if __name__ == "__main__":
    sys.exit(main())
