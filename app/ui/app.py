"""Entry points of the desktop app: `create_app`, `run` and the ``facerec-gui`` `main`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import app.ui  # noqa: F401 - neutralises cv2's Qt 5 environment before Qt starts
from app import APP_NAME, __version__
from app.config import Paths
from app.log import setup_logging
from app.pipeline.errors import FacerecError
from app.ui import neutralise_cv2_qt_env

log = logging.getLogger(__name__)

#: Quit after this many seconds (packaging smoke tests, screenshots).
ENV_QUIT_AFTER = "FACEREC_QUIT_AFTER"


def resource_path(*parts: str) -> Path:
    """A bundled read-only resource (``resources/``), in a checkout or a PyInstaller build."""
    bundle = getattr(sys, "_MEIPASS", None)
    root = Path(bundle) if bundle else Path(__file__).resolve().parents[2]
    return root.joinpath("resources", *parts)


def create_app(argv: Sequence[str] | None = None):  # noqa: ANN201 - QApplication
    """Return the QApplication, creating it if needed (tests reuse pytest-qt's)."""
    neutralise_cv2_qt_env()  # cv2 may have been imported since app.ui was
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QApplication.setApplicationName(APP_NAME)
        QApplication.setOrganizationName(APP_NAME)
        QApplication.setApplicationVersion(__version__)
        QApplication.setApplicationDisplayName(f"facerec {__version__}")
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
        app.setStyle("Fusion")
    icon = resource_path("icons", "facerec.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _install_excepthook(log_path: Path | None):  # noqa: ANN202
    """Log uncaught exceptions at CRITICAL and tell the user; keep the app running."""
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        log.critical("uncaught exception", exc_info=(exc_type, exc, tb))
        try:
            from PySide6.QtWidgets import QApplication, QMessageBox

            if QApplication.instance() is not None:
                box = QMessageBox(QMessageBox.Icon.Critical, "facerec: unexpected error",
                                  f"{exc_type.__name__}: {exc}\n\nThe app keeps running. "
                                  f"Details are in the log file:\n{log_path or 'not written'}")
                box.setDetailedText("".join(traceback.format_exception(exc_type, exc, tb)))
                box.exec()
        except Exception:  # the hook must never raise
            previous(exc_type, exc, tb)

    sys.excepthook = hook
    return previous


#: Libraries Qt's xcb platform plugin needs that a bare Linux system often lacks
#: (library file, Debian package).
_XCB_LIBRARIES = (("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
                  ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
                  ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"))


def display_problem() -> str | None:
    """Why a window cannot open here (Linux without a display or Qt's X11 libraries).

    Qt aborts the process (no exception) when its platform plugin cannot start; checking
    first turns that into a message saying what to do.
    """
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display: the desktop app needs a screen. Start it from a desktop session, "
                "or under a virtual one with 'xvfb-run -a facerec'; every other command works "
                "without one (facerec --help)")
    if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        import ctypes

        missing = []
        for lib, package in _XCB_LIBRARIES:
            try:
                ctypes.CDLL(lib)
            except OSError:
                missing.append(package)
        if missing:
            return ("Qt needs system libraries that are not installed: "
                    f"sudo apt-get install {' '.join(missing)}")
    return None


def run(paths: Paths, source: str | None = None, verbosity: int = 0) -> int:
    """Open the main window and run the event loop; return the exit code.

    Parameters
    ----------
    paths : Paths
        The data directory.
    source : str, optional
        Camera index, video file or stream URL to play at start.
    """
    from PySide6.QtCore import QTimer

    problem = display_problem()
    if problem:
        print(f"facerec: error: {problem}", file=sys.stderr)
        return 1
    log_path = setup_logging(paths.logs, verbosity)
    log.info("facerec %s GUI starting (data in %s)", __version__, paths.root)
    app = create_app()
    previous_hook = _install_excepthook(log_path)
    try:
        from app.ui.main_window import MainWindow

        window = MainWindow(paths, source, log_path=log_path)
        window.show()
        quit_after = os.environ.get(ENV_QUIT_AFTER)
        if quit_after:
            try:
                QTimer.singleShot(int(float(quit_after) * 1000), window.close)
            except ValueError:
                log.warning("ignoring %s=%r", ENV_QUIT_AFTER, quit_after)
        code = app.exec()
        window.shutdown()
        window.deleteLater()
        log.info("facerec GUI exited (%d)", code)
        from app.ui.main_window import STUCK_WORKERS

        if any(w.isRunning() for w in STUCK_WORKERS):
            # A worker stuck in a native call cannot be joined, and Qt aborts when a
            # running QThread is destroyed at exit: leave without finalisation.
            log.error("exiting with the pipeline worker still busy")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(code))
        return int(code)
    finally:
        sys.excepthook = previous_hook


def main(argv: Sequence[str] | None = None) -> int:
    """The ``facerec-gui`` entry point."""
    p = argparse.ArgumentParser(prog="facerec-gui", description="facerec desktop app")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the store lives (default: $FACEREC_HOME, else the user data dir)")
    p.add_argument("--source", metavar="SRC", help="camera index, video file or stream URL")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    args = p.parse_args(argv)
    try:
        paths = Paths.resolve(args.data_dir).check()
    except FacerecError as exc:
        print(f"facerec-gui: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"facerec-gui: error: cannot resolve the data directory: {exc}", file=sys.stderr)
        return 1
    return run(paths, args.source, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
