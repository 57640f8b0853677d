"""The main window: live view, menus, toolbar, status bar and the recognition log."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPoint, QSettings, QSize, Qt, QUrl
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDesktopServices,
    QKeyEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStyle,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.config import Paths, Settings
from app.files import open_private
from app.pipeline.errors import PersonError
from app.pipeline.recognition.sources import SourceKind, SourceSpec
from app.pipeline.types import name_key, normalize_name
from app.ui import palette
from app.ui.corrections import Outcome, correction_job
from app.ui.enroll_dialog import EnrollDialog
from app.ui.guide import GuideDialog
from app.ui.people_dialog import PeopleDialog
from app.ui.recognition_log import ElidedLabel, RecognitionLogPanel
from app.ui.screen import fit_to_screen
from app.ui.settings_dialog import SettingsDialog
from app.ui.video_view import MessageKind, SeekBar, VideoView, clock_text, face_label
from app.ui.worker import FramePayload, PipelineWorker

if TYPE_CHECKING:
    import numpy as np

    from app.pipeline.recognition.consistency import Flag
    from app.pipeline.storage.outdated import Outdated
    from app.pipeline.types import FaceResult, FrameResult, Person, Sighting

log = logging.getLogger(__name__)

#: Workers that did not stop when their window closed (see `MainWindow.shutdown`).
STUCK_WORKERS: list[PipelineWorker] = []

VIDEO_FILTER = ("Videos (*.mp4 *.avi *.mkv *.mov *.webm *.m4v *.mpg *.mpeg *.wmv *.mjpg);;"
                "All files (*)")


class MainWindow(QMainWindow):
    """The facerec window.

    Parameters
    ----------
    paths : Paths
        The data directory (store, settings, logs, ``ui.ini``).
    source : str, optional
        Camera index, video file or stream URL to play at start; by default the first
        camera that opens (or the one used last).
    log_path : Path, optional
        The log file, shown in error states.
    """

    def __init__(self, paths: Paths, source: str | None = None, *,
                 log_path: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.paths = paths.ensure()
        self.log_path = log_path or paths.logs / "facerec.log"
        self.settings = Settings.load(paths.settings)
        # Window state lives next to the data, never in the user's global QSettings.
        self.ui_settings = QSettings(str(paths.root / "ui.ini"), QSettings.Format.IniFormat)
        self.people: list[Person] = []
        self._outdated_note: str | None = None  # what the status bar said about old faces
        self.cameras: list[int] = []
        self.playing = False
        self.last_spec: SourceSpec | None = None
        self.enroll_dialog: EnrollDialog | None = None
        self.people_dialog: PeopleDialog | None = None
        self.guide_dialog: GuideDialog | None = None
        self.face_menu: QMenu | None = None
        self._ready = False
        self._shut_down = False
        self._source_chosen = False  # set when a source is opened; stops a late auto-open
        #: What the source is doing: "none", "opening", "playing", "paused", "stopped",
        #: "ended", "lost" or "failed" (a snapshot names it when it cannot be taken).
        self.source_state = "none"
        self._resume_at = 0  # the frame a stopped video file continues from

        self.view = VideoView(self)
        self.view.show_candidates = self.settings.show_candidates
        self.view.context_menu_requested.connect(self._on_view_context_menu_requested)
        self.seek_bar = SeekBar(self)
        self.seek_bar.seek_requested.connect(self._on_seek_bar_seek_requested)
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.view, 1)
        column.addWidget(self.seek_bar)
        self.setCentralWidget(central)
        self.log_panel = RecognitionLogPanel(None, self)
        self.log_dock = QDockWidget("Recognition log", self)
        self.log_dock.setObjectName("recognitionLogDock")
        self.log_dock.setWidget(self.log_panel)
        self.log_dock.setMinimumWidth(240)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.log_dock)
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._update_title()

        self.worker = PipelineWorker(paths, self.settings)
        self.log_panel.worker = self.worker
        w = self.worker
        w.ready.connect(self._on_worker_ready)
        w.failed.connect(self._on_worker_failed)
        w.result_ready.connect(self._on_worker_result_ready)
        w.source_opened.connect(self._on_worker_source_opened)
        w.source_failed.connect(self._on_worker_source_failed)
        w.source_lost.connect(self._on_worker_source_lost)
        w.source_ended.connect(self._on_worker_source_ended)
        w.source_closed.connect(self._on_worker_source_closed)
        w.cameras_found.connect(self._on_worker_cameras_found)
        w.people_changed.connect(self._on_worker_people_changed)
        w.log_rows.connect(self._on_worker_log_rows)
        w.paused_changed.connect(self._on_worker_paused_changed)
        w.store_status.connect(self._on_worker_store_status)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

        self.view.show_message(MessageKind.BUSY, "Starting…", "Loading the face models.")
        self._restore_window()
        self._set_enabled(False)
        w.start()
        if source is not None and str(source).strip():
            self.open_source(str(source))
        else:
            self.look_for_camera()

    # -- construction ----------------------------------------------------------------
    def _action(self, text: str, icon: QStyle.StandardPixmap | None = None,
                shortcut: QKeySequence | str | None = None, slot=None) -> QAction:  # noqa: ANN001
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if slot is not None:
            action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.open_file_action = self._action("Open video file…", sp.SP_DialogOpenButton,
                                             QKeySequence.StandardKey.Open, self._on_open_file)
        self.open_url_action = self._action("Open stream URL…", sp.SP_DriveNetIcon, "Ctrl+U",
                                            self._on_open_url)
        self.start_action = self._action("Start", sp.SP_MediaPlay, "Ctrl+R", self.start)
        self.stop_action = self._action("Stop", sp.SP_MediaStop, "Ctrl+.", self.stop)
        self.enroll_action = self._action("Enroll person…", sp.SP_FileDialogNewFolder, "Ctrl+E",
                                          lambda: self.open_enroll_dialog())
        self.people_action = self._action("Manage people…", sp.SP_FileDialogDetailedView,
                                          "Ctrl+P", self.open_people_dialog)
        self.settings_action = self._action("Settings…", sp.SP_FileDialogInfoView, None,
                                            self.open_settings_dialog)
        # The platform's Preferences key (none on Linux and Windows), and Ctrl+, everywhere.
        keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences)
        self.settings_action.setShortcuts(
            [*keys, *([QKeySequence("Ctrl+,")] if QKeySequence("Ctrl+,") not in keys else [])])
        self.pause_action = self._action("Pause", sp.SP_MediaPause, "Space", self.toggle_pause)
        self.pause_action.setEnabled(False)
        self.save_frame_action = self._action("Save frame as PNG…", sp.SP_DialogSaveButton,
                                              QKeySequence.StandardKey.Save,
                                              lambda: self.save_frame())
        self.save_frame_action.setEnabled(False)
        self.fullscreen_action = self._action("Full screen", None, "F11", self.toggle_full_screen)
        self.fullscreen_action.setCheckable(True)
        self.guide_action = self._action("User guide", sp.SP_DialogHelpButton,
                                         QKeySequence.StandardKey.HelpContents, self.open_guide)
        self.export_action = self._action("Export recognition log…", sp.SP_DialogSaveButton,
                                          None, self.log_panel.ask_and_export)
        self.quit_action = self._action("Quit", None, QKeySequence.StandardKey.Quit, self.close)
        self.search_cameras_action = self._action("Search for cameras", sp.SP_BrowserReload,
                                                  None, lambda: self.worker.find_cameras())
        self.about_action = self._action("About facerec", None, None, self._on_about)
        self.open_logs_action = self._action("Open log folder", None, None, self._open_log_folder)
        self.start_action.setEnabled(False)
        self.stop_action.setEnabled(False)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_file_action)
        file_menu.addAction(self.open_url_action)
        self.camera_menu = QMenu("&Camera", self)
        self.camera_menu.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon))
        self.camera_group = QActionGroup(self)
        self._fill_camera_menu()
        file_menu.addMenu(self.camera_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.start_action)
        file_menu.addAction(self.pause_action)
        file_menu.addAction(self.stop_action)
        file_menu.addSeparator()
        file_menu.addAction(self.save_frame_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        people = bar.addMenu("&People")
        people.addAction(self.enroll_action)
        people.addAction(self.people_action)
        view = bar.addMenu("&View")
        view.addAction(self.log_dock.toggleViewAction())
        view.addAction(self.fullscreen_action)
        tools = bar.addMenu("&Tools")
        tools.addAction(self.settings_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.guide_action)
        help_menu.addSeparator()
        help_menu.addAction(self.open_logs_action)
        help_menu.addAction(self.about_action)
        self.seek_bar.play_button.setDefaultAction(self.pause_action)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main", self)
        tb.setObjectName("mainToolBar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addAction(self.open_file_action)
        camera_button = QToolButton(self)
        camera_button.setMenu(self.camera_menu)
        camera_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        camera_button.setText("Camera")
        camera_button.setIcon(self.camera_menu.icon())
        camera_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addWidget(camera_button)
        tb.addSeparator()
        tb.addAction(self.start_action)
        tb.addAction(self.pause_action)
        tb.addAction(self.stop_action)
        tb.addSeparator()
        tb.addAction(self.enroll_action)
        tb.addAction(self.people_action)
        tb.addAction(self.settings_action)
        self.addToolBar(tb)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.source_label = ElidedLabel("No source")
        self.fps_label = QLabel("– fps")
        self.timing_label = QLabel("detect – · embed – · search –")
        self._stage_avg: dict[str, float] = {}
        self.people_label = QLabel("– people")
        # Faces enrolled by an older version of facerec: not used for recognition, so the
        # user must know (app.pipeline.storage.outdated); hidden while every face is current.
        self.outdated_label = QLabel()
        self.outdated_label.setObjectName("outdatedLabel")
        self.outdated_label.setStyleSheet(palette.WARNING_STYLE)
        self.outdated_label.hide()
        # Shown only while a shared gallery is unreachable.
        self.store_label = QLabel("")
        self.store_label.setObjectName("storeStatus")
        self.store_label.setStyleSheet(palette.text_style(palette.ALERT, "font-weight: bold;"))
        self.store_label.hide()
        sb.addWidget(self.source_label, 1)
        sb.addPermanentWidget(self.store_label)
        for label in (self.fps_label, self.timing_label, self.outdated_label, self.people_label):
            label.setContentsMargins(8, 0, 8, 0)
            sb.addPermanentWidget(label)

    def _fill_camera_menu(self) -> None:
        menu = self.camera_menu
        menu.clear()
        for action in self.camera_group.actions():
            self.camera_group.removeAction(action)
        if not self.cameras:
            none = menu.addAction("No camera found")
            none.setEnabled(False)
        current = (self.last_spec.target if self.last_spec and self.last_spec.kind == SourceKind.CAMERA
                   and self.playing else None)
        for index in self.cameras:
            action = menu.addAction(f"Camera {index}")
            action.setCheckable(True)
            action.setChecked(index == current)
            action.triggered.connect(lambda _=False, i=index: self.open_source(str(i)))
            self.camera_group.addAction(action)
        menu.addSeparator()
        menu.addAction(self.search_cameras_action)

    def _restore_window(self) -> None:
        geometry = self.ui_settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
            fit_to_screen(self)  # the screen (or its scale) may have changed since
        else:
            fit_to_screen(self, QSize(1280, 800))
        state = self.ui_settings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)  # the log panel keeps the width the user gave it
        else:
            self.resizeDocks([self.log_dock], [max(300, self.width() // 4)],
                             Qt.Orientation.Horizontal)

    def _save_window(self) -> None:
        self.ui_settings.setValue("window/geometry", self.saveGeometry())
        self.ui_settings.setValue("window/state", self.saveState())
        self.ui_settings.sync()

    def _set_enabled(self, ready: bool) -> None:
        for action in (self.enroll_action, self.people_action, self.settings_action):
            action.setEnabled(ready)
        self.save_frame_action.setEnabled(self.view.payload is not None)

    def _update_title(self, source: str | None = None) -> None:
        title = f"facerec {__version__}"
        self.setWindowTitle(f"{source} — {title}" if source else title)

    # -- sources ---------------------------------------------------------------------
    def open_source(self, text: str | SourceSpec, start_at: int = 0) -> None:
        """Play a camera index, video file or stream URL (a file from frame *start_at*)."""
        spec = text if isinstance(text, SourceSpec) else SourceSpec.parse(text)
        self.last_spec = spec
        self.source_state = "opening"
        self._resume_at = 0
        self.view.show_message(MessageKind.BUSY, f"Opening {spec.describe()}…", "")
        self.source_label.setText(f"Opening {spec.describe()}…")
        self._source_chosen = True
        self.worker.open_source(spec, start_at)

    def look_for_camera(self) -> None:
        """Probe for cameras and open one (the last used, else the first) if any."""
        self._source_chosen = False
        self.worker.find_cameras(auto_open=True)

    def start(self) -> None:
        """Play the last source again (a stopped video file from where it was), or look for a camera."""
        if self.last_spec is not None:
            self.open_source(self.last_spec, self._resume_at)
        else:
            self.look_for_camera()

    def replay(self) -> None:
        """Play the last video from its beginning."""
        self._resume_at = 0
        self.start()

    def stop(self) -> None:
        """Stop playing and release the camera or file (a file remembers where it was)."""
        self.worker.close_source()

    def toggle_pause(self) -> None:
        """Pause a playing video file, or resume a paused one, where it is."""
        if self.source_state == "paused":
            self.worker.resume()
        elif self.source_state == "playing" and self._is_file():
            self.worker.pause()

    def _is_file(self) -> bool:
        return self.last_spec is not None and self.last_spec.kind == SourceKind.FILE

    def _on_seek_bar_seek_requested(self, frame: int) -> None:
        if self.source_state in ("playing", "paused") and self._is_file():
            self.worker.seek(frame)

    def _ask_video_file(self) -> str:
        start = str(self.ui_settings.value("paths/last_video_dir", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Open video file", start, VIDEO_FILTER)
        return path

    def _on_open_file(self) -> None:
        path = self._ask_video_file()
        if path:
            self.ui_settings.setValue("paths/last_video_dir", str(Path(path).parent))
            self.open_source(path)

    def _ask_stream_url(self) -> str:
        url, ok = QInputDialog.getText(
            self, "Open stream", "Stream URL (rtsp://, http://…):",
            text=str(self.ui_settings.value("paths/last_stream", "rtsp://")))
        return url.strip() if ok else ""

    def _on_open_url(self) -> None:
        url = self._ask_stream_url()
        if url:
            if "://" not in url:
                QMessageBox.warning(self, "Open stream",
                                    f"“{url}” is not a URL (it should start with rtsp:// "
                                    "or http://).")
                return
            self.ui_settings.setValue("paths/last_stream", url)
            self.open_source(url)

    def _choose_another_source(self) -> None:
        self.worker.find_cameras(auto_open=False)
        self.camera_menu.popup(self.mapToGlobal(self.view.geometry().center()))

    def _set_playing(self, playing: bool) -> None:
        self.playing = playing
        if not playing:
            self._show_pause_button(False)
        self.start_action.setEnabled(self._ready and not playing)
        self.stop_action.setEnabled(self._ready and playing)
        self.pause_action.setEnabled(self._ready and playing and self._is_file())
        self.seek_bar.setVisible(self._is_file() and self.source_state in
                                 ("playing", "paused", "stopped", "ended"))
        self.seek_bar.slider.setEnabled(playing)
        self._fill_camera_menu()

    # -- worker signals --------------------------------------------------------------
    def _on_worker_ready(self, people: list[Person]) -> None:
        if self._shut_down:
            return  # queued before the window closed
        self._ready = True
        self._set_enabled(True)
        self._on_worker_people_changed(people)
        self._set_playing(self.playing)
        self.log_panel.reload()  # the log kept in the store, from earlier sessions too
        if self.view.message.kind is MessageKind.BUSY and self.last_spec is None:
            self.view.show_message(MessageKind.BUSY, "Looking for cameras…", "")

    def _on_worker_failed(self, message: str) -> None:
        self._ready = False
        self.source_state = "failed"
        self._set_enabled(False)
        self._set_playing(False)
        self.view.set_dimmed(True)
        title = "Recognition stopped" if self.view.payload else "Recognition could not start"
        self.view.show_message(
            MessageKind.ERROR, title,
            f"{message}\n\nDetails are in the log file:\n{self.log_path}",
            [("Open log folder", self._open_log_folder), ("Quit", self.close)])
        self.source_label.setText(title)

    def _on_worker_result_ready(self, payload: FramePayload) -> None:
        self.view.set_payload(payload)
        if self.view.isVisible():
            self.view.repaint()  # paint now: the acknowledgement below means "on screen"
        self.worker.frame_shown()
        self.fps_label.setText("paused" if payload.paused else f"{payload.fps:.1f} fps")
        self.timing_label.setText(self._stage_times(payload.result))
        self.save_frame_action.setEnabled(True)
        if not payload.live:
            self.seek_bar.show_position(payload.position, payload.frame_count, payload.source_fps)
            if payload.paused:  # a frame sought while paused
                self._on_worker_paused_changed(True)

    def _on_worker_log_rows(self, rows: list[Sighting]) -> None:
        self.log_panel.upsert(rows)

    def _show_pause_button(self, paused: bool) -> None:
        sp = QStyle.StandardPixmap.SP_MediaPlay if paused else QStyle.StandardPixmap.SP_MediaPause
        self.pause_action.setText("Resume" if paused else "Pause")
        self.pause_action.setIcon(self.style().standardIcon(sp))

    def _on_worker_paused_changed(self, paused: bool) -> None:
        self.source_state = "paused" if paused else "playing"
        self._show_pause_button(paused)
        name = self.last_spec.describe() if self.last_spec else ""
        where = self.seek_bar.time_label.text().split(" / ")[0]
        self.source_label.setText(f"Paused at {where}: {name}" if paused else f"Playing: {name}")

    def _stage_times(self, result: FrameResult) -> str:
        """Per-stage milliseconds, smoothed over about a second of frames.

        The tracker embeds a face only now and then, so one frame's figures jump; a
        moving average reads steadily. Embedding is shown per embedded face, the figure
        that decides how many faces a frame can afford.
        """
        t = result.timings
        avg = self._stage_avg
        alpha = 0.1
        for key in ("detect", "align", "embed", "search", "total"):
            now = t.get(key, 0.0)
            avg[key] = now if key not in avg else (1 - alpha) * avg[key] + alpha * now
        if result.embedded:
            per_face = t.get("embed", 0.0) / result.embedded
            old = avg.get("per_face", per_face)
            avg["per_face"] = 0.8 * old + 0.2 * per_face
        per_face = f" ({avg['per_face']:.0f} ms/face)" if "per_face" in avg else ""
        return (f"detect {avg['detect']:.1f} · align {avg['align']:.1f} · embed {avg['embed']:.1f}"
                f"{per_face} · search {avg['search']:.2f} · total {avg['total']:.1f} ms")

    def _on_worker_source_opened(self, description: str, live: bool) -> None:
        self.source_state = "playing"
        self._on_worker_paused_changed(False)
        self.view.hide_message()
        self.view.set_dimmed(False)
        self.source_label.setText(f"{'Live: ' if live else 'Playing: '}{description}")
        self._update_title(description)
        self._set_playing(True)
        if self.last_spec is not None and self.last_spec.kind == SourceKind.CAMERA:
            self.ui_settings.setValue("source/camera", int(self.last_spec.target))

    def _on_worker_source_failed(self, spec: SourceSpec, message: str) -> None:
        self.source_state = "failed"
        self._set_playing(False)
        self.view.set_dimmed(True)
        self.source_label.setText("No source")
        if spec.kind == SourceKind.CAMERA:
            self.view.show_message(
                MessageKind.WARNING, "Camera not available",
                f"{message}.\n\nChoose another camera, or open a video file or a stream.",
                [("Open video file…", self._on_open_file),
                 ("Search for cameras", self.look_for_camera),
                 ("Open stream URL…", self._on_open_url)])
        elif spec.kind == SourceKind.FILE:
            self.view.show_message(MessageKind.WARNING, "Cannot play this video", message,
                                   [("Open another video…", self._on_open_file)])
        else:
            self.view.show_message(MessageKind.WARNING, "Cannot open the stream", message,
                                   [("Retry", lambda: self.open_source(spec)),
                                    ("Open stream URL…", self._on_open_url),
                                    ("Open video file…", self._on_open_file)])

    def _on_worker_source_lost(self, message: str) -> None:
        self.source_state = "lost"
        self._set_playing(False)
        self.view.set_dimmed(True)
        what = "Camera" if self.last_spec and self.last_spec.kind == SourceKind.CAMERA else "Stream"
        self.source_label.setText(f"{what} lost")
        self.view.show_message(
            MessageKind.WARNING, f"{what} lost",
            f"{message}.\n\nCheck the cable or the network, then retry, or choose another "
            "source.",
            [("Retry", self.start), ("Choose another…", self._choose_another_source),
             ("Open video file…", self._on_open_file)])

    def _on_worker_source_ended(self) -> None:
        self.source_state = "ended"
        self._resume_at = 0
        self._set_playing(False)
        self.view.set_dimmed(True)
        name = self.last_spec.describe() if self.last_spec else "The video"
        self.source_label.setText(f"Ended: {name}")
        self.view.show_message(MessageKind.INFO, "Video ended", f"{name} has played to the end.",
                               [("Replay", self.replay),
                                ("Open another video…", self._on_open_file)])

    def _on_worker_source_closed(self) -> None:
        self.source_state = "stopped"
        payload = self.view.payload
        self._set_playing(False)
        self.view.set_dimmed(True)
        if self._is_file() and payload is not None and not payload.live:
            self._resume_at = payload.position + 1
            at = clock_text(payload.position / payload.source_fps) if payload.source_fps else \
                f"frame {payload.position}"
            self.source_label.setText(f"Stopped at {at}")
            self.view.show_message(
                MessageKind.INFO, "Stopped", f"The video is closed at {at}. Start continues from there; "
                "Replay starts it over.", [("Start", self.start), ("Replay", self.replay)])
            return
        self.source_label.setText("Stopped")
        self.view.show_message(MessageKind.INFO, "Stopped", "Recognition is stopped and the camera is "
                               "released.", [("Start", self.start)])

    def _on_worker_cameras_found(self, cameras: list[int], auto_open: bool) -> None:
        self.cameras = list(cameras)
        self._fill_camera_menu()
        if not auto_open or self.playing or self._source_chosen:
            return  # the user picked a source while the probe ran: keep their choice
        if cameras:
            last = self.ui_settings.value("source/camera")
            index = int(last) if last is not None and str(last).isdigit() and \
                int(last) in cameras else cameras[0]
            self.open_source(str(index))
            return
        self.source_label.setText("No camera found")
        self.view.show_message(
            MessageKind.WARNING, "No camera found",
            "No camera is connected, or every camera is in use by another program.\n\n"
            "You can open a video file or a network stream instead.",
            [("Open video file…", self._on_open_file),
             ("Open stream URL…", self._on_open_url),
             ("Search again", self.look_for_camera)])

    def _on_worker_people_changed(self, people: list[Person]) -> None:
        self.people = list(people)
        n = len(self.people)
        self.people_label.setText(f"{n} {'person' if n == 1 else 'people'} enrolled")
        if self._ready:
            self.log_panel.reload()  # renamed or removed people: their rows follow
            self.worker.call(lambda rec, _reply: rec.outdated(), on_done=self._show_outdated)

    def _show_outdated(self, outdated: Outdated) -> None:
        """Say how many faces an older version enrolled (and are not recognised), if any.

        A lasting label in the status bar, and the whole sentence once when it changes.
        """
        if self._shut_down:
            return
        note = outdated.note()
        self.outdated_label.setVisible(note is not None)
        if note is not None:
            sentence = f"{note[:1].upper()}{note[1:]} (People… shows who)."
            n = outdated.people
            self.outdated_label.setText(f"⚠ {n} {'person' if n == 1 else 'people'} to enroll again")
            self.outdated_label.setToolTip(sentence)
            if note != self._outdated_note:
                self.statusBar().showMessage(sentence, 20000)
        self._outdated_note = note

    def _on_worker_store_status(self, offline_since: float | None) -> None:
        from app.pipeline.storage.shared import describe_offline

        text = describe_offline(offline_since)
        self.store_label.setText(text)
        self.store_label.setToolTip("Recognising from this computer's copy of the gallery; "
                                    "the recognition log is queued and sent when it is back. "
                                    "Enrolling waits until then." if text else "")
        self.store_label.setVisible(bool(text))
        if not text:
            self.statusBar().showMessage("Shared gallery back online", 5000)

    # -- the live view: snapshots, corrections, saving a frame ---------------------------
    def current_frame(self) -> np.ndarray | None:
        """The frame on screen, or None."""
        return self.view.payload.frame if self.view.payload is not None else None

    def snapshot_frame(self) -> np.ndarray | str:
        """The frame a snapshot takes, or why there is none (a stopped source, say).

        A paused video file gives the frame it is paused on; a stopped, ended or lost
        source gives the reason, since its last frame is no longer what the camera sees.
        """
        frame = self.current_frame()
        what = "camera" if self.last_spec and self.last_spec.kind == SourceKind.CAMERA else \
            "video" if self._is_file() else "stream"
        reasons = {
            "stopped": f"The {what} is stopped: press Start (Ctrl+R), then take the snapshot.",
            "ended": "The video has ended: replay it, pause it on a good frame (Space), then "
                     "take the snapshot.",
            "lost": f"The {what} is lost: retry it or choose another source first.",
            "failed": f"The {what} could not be opened: choose another source first.",
            "opening": f"The {what} is still opening: wait for the picture.",
        }
        if self.source_state in reasons:
            return reasons[self.source_state]
        if frame is None:
            return "No live picture: open a camera or a video first."
        return frame

    def _on_view_context_menu_requested(self, payload: FramePayload, face: FaceResult | None,
                                        pos: QPoint) -> None:
        self.face_menu = self.build_face_menu(payload, face)
        self.face_menu.popup(pos)

    def build_face_menu(self, payload: FramePayload, face: FaceResult | None) -> QMenu:
        """The right-click menu of the live view, for *face* (None: off any face)."""
        menu = QMenu(self)
        menu.setObjectName("faceMenu")
        if face is not None:
            title = menu.addAction(face_label(face, show_candidate=True))
            title.setEnabled(False)
            this_is = menu.addMenu("This is…")
            this_is.setObjectName("thisIsMenu")
            for person in sorted(self.people, key=lambda p: p.name.casefold()):
                if person.name == face.name:
                    continue
                action = this_is.addAction(person.name)
                action.triggered.connect(
                    lambda _=False, n=person.name: self.correct_face(payload, face, n))
            if self.people:
                this_is.addSeparator()
            new = this_is.addAction("New person…")
            new.triggered.connect(lambda: self._correct_as_new_person(payload, face))
            if face.name is not None:
                not_this = menu.addAction(f"Not {face.name}")
                not_this.triggered.connect(lambda: self.correct_face(payload, face, None))
            menu.addSeparator()
        menu.addAction(self.save_frame_action)
        menu.addAction(self.enroll_action)
        if self._is_file() and self.source_state in ("playing", "paused"):
            menu.addAction(self.pause_action)
        return menu

    def _ask_new_person_name(self) -> str | None:
        name, ok = QInputDialog.getText(self, "This is a new person", "Name:",
                                        QLineEdit.EchoMode.Normal, "")
        return name if ok and name.strip() else None

    def _correct_as_new_person(self, payload: FramePayload, face: FaceResult) -> None:
        name = self._ask_new_person_name()
        if name is None:
            return
        try:
            clean = normalize_name(name)
        except PersonError as exc:
            QMessageBox.warning(self, "This is a new person", str(exc).capitalize() + ".")
            return
        # The store's own rule for "the same name" (case and NFC, but "ß" is not "ss").
        clean = next((p.name for p in self.people if name_key(p.name) == name_key(clean)), clean)
        self.correct_face(payload, face, clean)

    def correct_face(self, payload: FramePayload, face: FaceResult, name: str | None, *,
                     force: bool = False, add: bool = True) -> None:
        """The user's word on a face in *payload*: it is *name*, or (None) not its name.

        The face is cut out of that very frame and goes through the enrollment checks
        in the worker; a flagged face is shown to the user, who decides.
        """
        self.statusBar().showMessage("Correcting…", 3000)
        self.worker.call(correction_job(self.worker, payload.frame, face, name, force=force, add=add),
                         on_done=lambda o: self._on_correction_done(payload, face, name, o),
                         on_error=self._on_correction_failed, people_changed=True)

    def _ask_flagged_correction(self, name: str, flag: Flag, exists: bool) -> str:
        """Ask what to do with a flagged face: "add", "rename" (only the name) or "cancel"."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Is this really " + name + "?",
                          f"This face {flag.reason}.\n\nAdding it to {name} would teach facerec "
                          "a wrong face if it is not them.", parent=self)
        add = box.addButton(f"Add it to {name}", QMessageBox.ButtonRole.AcceptRole)
        rename = box.addButton("Only correct the name here",
                               QMessageBox.ButtonRole.ActionRole) if exists else None
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return "add" if clicked is add else "rename" if rename is not None and clicked is rename \
            else "cancel"

    def _on_correction_done(self, payload: FramePayload, face: FaceResult, name: str | None,
                            outcome: Outcome) -> None:
        if self._shut_down:
            return
        if outcome.flag is not None and name is not None:
            choice = self._ask_flagged_correction(name, outcome.flag, outcome.person is not None)
            if choice != "cancel":
                self.correct_face(payload, face, name, force=True, add=choice == "add")
            return
        if outcome.person is None:
            text = f"{face.name} will not be shown for this face any more"
        elif outcome.added:
            text = f"Added this face to {outcome.person.name} ({_faces(outcome.person.face_count)})"
        else:
            text = f"This face is shown as {outcome.person.name}" + (
                f"; it was not added to their photos ({outcome.note})" if outcome.note else "")
        if not outcome.in_view:
            text += "; the face had left the view"
        self.statusBar().showMessage(text + ".", 8000)

    def _on_correction_failed(self, message: str) -> None:
        if not self._shut_down:
            QMessageBox.warning(self, "Correction", message[:1].upper() + message[1:] + ".")

    def _ask_png_path(self) -> str:
        start = Path(str(self.ui_settings.value("paths/last_frame_dir", str(Path.home()))))
        name = f"facerec-{datetime.now():%Y%m%d-%H%M%S}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save frame", str(start / name),
                                              "PNG images (*.png)")
        return path

    def save_frame(self, path: str | Path | None = None) -> Path | None:
        """Save the frame on screen, at its own resolution, with its boxes, as a PNG."""
        image = self.view.annotated_image()
        if image is None:
            self.statusBar().showMessage("No frame to save yet.", 5000)
            return None
        target = str(path) if path is not None else self._ask_png_path()
        if not target:
            return None
        if not target.lower().endswith(".png"):
            target += ".png"
        # Encoded in memory, then written owner-only: the frame shows faces and names.
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        try:
            if not image.save(buffer, "PNG"):
                raise OSError("the frame could not be encoded")
            with open_private(target, "wb") as f:
                f.write(data.data())
        except OSError as exc:
            QMessageBox.warning(self, "Save frame",
                                f"Could not write {target} ({exc.strerror or exc}).")
            return None
        self.ui_settings.setValue("paths/last_frame_dir", str(Path(target).parent))
        self.statusBar().showMessage(f"Saved {Path(target).name}", 5000)
        return Path(target)

    # -- window ----------------------------------------------------------------------
    def toggle_full_screen(self) -> None:
        """F11: the live view fills the screen; F11 or Esc again restores the window."""
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()
        self.fullscreen_action.setChecked(self.isFullScreen())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: D102
        if event.key() == Qt.Key.Key_Escape and self.isFullScreen():
            self.toggle_full_screen()
            return
        super().keyPressEvent(event)

    def open_guide(self) -> GuideDialog:
        """Help → User guide (non-blocking)."""
        if self.guide_dialog is None:
            self.guide_dialog = GuideDialog(self)
            self.guide_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.guide_dialog.destroyed.connect(lambda: setattr(self, "guide_dialog", None))
        self.guide_dialog.show()
        self.guide_dialog.raise_()
        return self.guide_dialog

    # -- dialogs ---------------------------------------------------------------------
    def open_enroll_dialog(self, name: str | None = None,
                           files: Sequence[str | Path] = ()) -> EnrollDialog:
        """Open the enrollment dialog (non-blocking); for *name*, add photos to them."""
        parent = self.people_dialog if (self.people_dialog is not None
                                        and self.people_dialog.isVisible()) else self
        dlg = EnrollDialog(self.worker, self.people, parent, name=name or "",
                           existing=name is not None, frame_provider=self.snapshot_frame)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.saved.connect(self._on_enroll_dialog_saved)
        self.enroll_dialog = dlg
        dlg.destroyed.connect(lambda: setattr(self, "enroll_dialog", None))
        dlg.open()
        if files:
            dlg.add_files(files)
        return dlg

    def _on_enroll_dialog_saved(self, person: Person) -> None:
        self.statusBar().showMessage(f"Enrolled {person.name} ({_faces(person.face_count)})", 5000)

    def open_people_dialog(self) -> PeopleDialog:
        """Open the people manager (non-blocking)."""
        if self.people_dialog is not None:
            self.people_dialog.raise_()
            self.people_dialog.activateWindow()
            return self.people_dialog
        dlg = PeopleDialog(self.worker, self, open_enroll=self.open_enroll_dialog)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.people_dialog = dlg
        dlg.destroyed.connect(lambda: setattr(self, "people_dialog", None))
        dlg.show()
        return dlg

    def open_settings_dialog(self) -> SettingsDialog:
        """Open the settings dialog; on OK, save and apply the settings."""
        dlg = SettingsDialog(self.settings, self, people=len(self.people))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(lambda: self.apply_settings(dlg.settings()))
        dlg.open()
        return dlg

    def apply_settings(self, settings: Settings) -> None:
        """Save settings to the data directory and hand them to the worker."""
        self.settings = settings.validated()
        try:
            self.settings.save(self.paths.settings)
        except OSError as exc:
            QMessageBox.warning(self, "Settings", f"Could not save the settings: {exc}")
        self.worker.apply_settings(self.settings)
        self.view.show_candidates = self.settings.show_candidates
        self.view.update()
        self.log_panel.reload()  # the retention may have pruned old rows
        self.statusBar().showMessage("Settings applied", 3000)

    def _open_log_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path.parent)))

    def _on_about(self) -> None:
        QMessageBox.about(
            self, "About facerec",
            f"<b>facerec {__version__}</b><p>On-device face recognition: faces never leave "
            f"this computer.</p><p>Data: {self.paths.root}<br>Log: {self.log_path}</p>")

    # -- shutdown --------------------------------------------------------------------
    def shutdown(self) -> None:
        """Save the window state and stop the worker (idempotent)."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self._save_window()
        except Exception:  # never let a settings problem keep the camera open
            log.exception("could not save the window state")
        if not self.worker.stop(8000):
            # Destroying a running QThread aborts the process: keep it referenced and
            # parentless; app.run() ends the process without Python finalisation.
            log.error("the pipeline worker did not stop in time")
            self.worker.setParent(None)
            STUCK_WORKERS.append(self.worker)
        app = QApplication.instance()
        if app is not None:
            try:
                app.aboutToQuit.disconnect(self.shutdown)
            except (RuntimeError, TypeError):
                pass

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: D102
        dlg = self.enroll_dialog
        if dlg is not None and not self._shut_down and not dlg.confirm_discard():
            event.ignore()  # faces waiting to be saved: the user chose to keep them
            return
        self.shutdown()
        super().closeEvent(event)


def _faces(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"
