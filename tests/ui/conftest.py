"""Fixtures for the GUI tests: real widgets, real models, a video file as the camera.

Every test here is checked for leaks afterwards: no pipeline worker still running, no
frame-grabber thread, and no top-level widget left open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import app.ui  # noqa: F401 - drops cv2's Qt 5 plugin path before the QApplication exists
from app.config import Paths


@pytest.fixture(autouse=True)
def check_leaks(qapp) -> Iterator[None]:  # noqa: ANN001
    """Fail a test that leaves a worker, a grabber thread or a top-level widget behind.

    It depends on ``qapp`` only, so it is set up before ``qtbot`` and torn down after
    pytest-qt has closed the widgets registered with ``qtbot.addWidget``.
    """
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    from app.ui.worker import PipelineWorker

    before = set(QApplication.topLevelWidgets())
    threads_before = set(threading.enumerate())
    yield
    for worker in list(PipelineWorker.instances):
        worker.stop()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    running = [w for w in PipelineWorker.instances if w.isRunning()]
    assert not running, f"pipeline worker still running: {running}"
    left = [w for w in QApplication.topLevelWidgets()
            if w not in before and not w.objectName().startswith("qt_")
            and w.metaObject().className() not in ("QMenu", "QComboBoxPrivateContainer")]
    for w in left:  # clean up so one leak does not fail every following test
        w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not left, f"top-level widgets left open: {left}"
    # Python threads started by the test (e.g. the frame grabber); a QThread appears as a
    # "dummy" thread that threading never forgets, and is checked above instead.
    new = [t for t in set(threading.enumerate()) - threads_before
           if not isinstance(t, threading._DummyThread)]
    for t in new:
        t.join(timeout=3)
    alive = [t.name for t in new if t.is_alive()]
    assert not alive, f"threads left running: {alive}"


@pytest.fixture
def paths(data_dir: Path) -> Paths:
    """The test's data directory."""
    return Paths(data_dir).ensure()


@pytest.fixture(autouse=True)
def no_real_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never probe the machine's cameras: tests see no camera unless they say otherwise."""
    monkeypatch.setattr("app.ui.worker.list_cameras", lambda: [])


@pytest.fixture
def make_window(qtbot, paths: Paths) -> Callable[..., object]:  # noqa: ANN001
    """Build a shown `MainWindow` on the test's data dir; closed by qtbot at teardown."""
    from app.ui.main_window import MainWindow

    def make(source: str | Path | None = None, wait_ready: bool = True) -> MainWindow:
        win = MainWindow(paths, str(source) if source is not None else None)
        qtbot.addWidget(win, before_close_func=lambda w: w.shutdown())
        win.resize(1000, 640)
        win.show()
        if wait_ready:
            qtbot.waitUntil(lambda: win._ready, timeout=30000)
        return win

    return make


@pytest.fixture(scope="session")
def pair_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x400 MJPG clip: Obama (obama3.jpg) and Biden side by side for 20 s at 12 fps.

    Two faces in view whose tracks live long enough to be corrected, paused and sought.
    """
    import cv2
    import numpy as np

    from app.pipeline.imageio import load_image
    from tests.conftest import FR
    from tests.video import fit, write_slideshow

    folder = tmp_path_factory.mktemp("pair")
    still = np.hstack([fit(load_image(FR / "obama3.jpg"), (320, 400)),
                       fit(load_image(FR / "biden.jpg"), (320, 400))])
    cv2.imwrite(str(folder / "pair.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    return write_slideshow(folder / "pair.avi", [folder / "pair.png"], frames_each=240,
                           size=(640, 400), fps=12.0)
