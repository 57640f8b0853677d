"""Enroll a person: a name, snapshots from the live feed and photo files; saved at once.

Every face check runs in the pipeline worker (the only owner of the models); the dialog
only queues jobs and shows their answers, so it never blocks the GUI. Each face is
checked on its own (one face, large and sharp enough), and the faces together by the
same-person checks (`Recognizer.check_faces`, the policy the command line follows): a
flagged face is marked on its thumbnail with the reason, and Save waits until the user
drops it or keeps it on purpose. Saving is one `Recognizer.enroll` call: one
transaction, all or nothing, and the running recognizer knows the person as soon as it
returns. Closing the dialog with faces not yet saved asks first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QPainter,
    QPen,
    QPixmap,
    QPolygonF,
    QShortcut,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.pipeline.errors import PersonError
from app.pipeline.imageio import IMAGE_SUFFIXES, display_name
from app.pipeline.types import PHOTO_OF_ONE, SNAPSHOT, name_key, normalize_name
from app.ui import palette
from app.ui.palette import ERROR_STYLE, HINT_STYLE, OK_STYLE
from app.ui.screen import fit_to_screen
from app.ui.video_view import rgb_to_qimage
from app.ui.widgets import button

if TYPE_CHECKING:
    from app.pipeline.recognition.consistency import Flag
    from app.pipeline.recognition.recognizer import PreparedFace, Recognizer
    from app.pipeline.types import NewFace, Person
    from app.ui.worker import PipelineWorker, Reply

log = logging.getLogger(__name__)

THUMB = 96
WARN_COLOR = QColor(palette.FLAG)
#: Milliseconds the same-person check waits for more changes (typing a name) before it runs.
RECHECK_DELAY_MS = 250


@dataclass(frozen=True)
class AcceptedFace:
    """A face that passed the checks and waits to be saved."""

    face: NewFace
    crop: np.ndarray
    label: str
    key: str  # the file path, or "camera-N" for a snapshot


def local_files(event: QDragEnterEvent | QDropEvent) -> list[str]:
    """The local files dragged (a folder brings the photos directly inside it)."""
    out: list[str] = []
    for url in event.mimeData().urls() if event.mimeData().hasUrls() else []:
        if not url.isLocalFile():
            continue
        path = Path(url.toLocalFile())
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.iterdir())
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(str(path))
    return out


def thumbnail_grid(name: str, icon: int, cell: QSize) -> QListWidget:
    """A grid of face thumbnails, several of which can be selected."""
    grid = QListWidget()
    grid.setObjectName(name)
    grid.setViewMode(QListView.ViewMode.IconMode)
    grid.setIconSize(QSize(icon, icon))
    grid.setGridSize(cell)
    grid.setResizeMode(QListView.ResizeMode.Adjust)
    grid.setMovement(QListView.Movement.Static)
    grid.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
    return grid


def flagged_icon(pixmap: QPixmap, kept: bool = False) -> QIcon:
    """A thumbnail with a warning triangle (and an amber frame unless kept on purpose)."""
    out = QPixmap(pixmap)
    p = QPainter(out)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    if not kept:
        p.setPen(QPen(WARN_COLOR, 4))
        p.drawRect(out.rect().adjusted(2, 2, -2, -2))
    size = max(18, out.width() // 3)
    x0, y0 = out.width() - size - 3, 3
    triangle = QPolygonF([QPointF(x0 + size / 2, y0), QPointF(x0 + size, y0 + size),
                          QPointF(x0, y0 + size)])
    p.setPen(QPen(QColor(palette.FLAG_OUTLINE), 1.5))
    p.setBrush(QBrush(WARN_COLOR if not kept else QColor(palette.FLAG_KEPT)))
    p.drawPolygon(triangle)
    font = p.font()
    font.setBold(True)
    font.setPixelSize(int(size * 0.7))
    p.setFont(font)
    p.drawText(x0, int(y0 + size * 0.2), size, int(size * 0.85),
               int(Qt.AlignmentFlag.AlignCenter), "!")
    p.end()
    return QIcon(out)


class EnrollDialog(QDialog):
    """Add a new person, or photos to an existing one.

    Parameters
    ----------
    worker : PipelineWorker
        Runs the face checks and the final save.
    people : sequence of Person
        Who is enrolled now (for the completer and the name-exists check).
    name : str
        Pre-filled name; with ``existing=True`` the dialog adds photos to that person.
    frame_provider : callable, optional
        Returns the frame shown in the live view (RGB array), or why there is none (a
        message, e.g. the source is stopped), or None; without it the snapshot button
        is disabled.
    """

    #: Emitted with the stored `Person` after a successful save.
    saved = Signal(object)
    #: Emitted whenever a face check (file or snapshot) has been answered.
    checked = Signal()
    #: Emitted when the same-person checks of the faces have been answered.
    flags_checked = Signal()

    def __init__(self, worker: PipelineWorker, people: Sequence[Person],
                 parent: QWidget | None = None, *, name: str = "", existing: bool = False,
                 frame_provider: Callable[[], np.ndarray | str | None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("enrollDialog")
        self.setWindowTitle("Add photos to a person" if existing else "Enroll a person")
        self.worker = worker
        self.frame_provider = frame_provider
        self.people = {name_key(p.name): p for p in people}
        self.accepted_faces: list[AcceptedFace] = []
        self.rejected: list[str] = []
        #: Same-person flags by face key, and the flagged faces kept on purpose.
        self.flags: dict[str, Flag] = {}
        self.kept: set[str] = set()
        self._check_seq = 0
        self._checking_flags = False
        self._recheck_timer = QTimer(self)
        self._recheck_timer.setSingleShot(True)
        self._recheck_timer.setInterval(RECHECK_DELAY_MS)
        self._recheck_timer.timeout.connect(self._recheck)
        self._pending: list[Reply] = []
        self._files_total = 0
        self._files_done = 0
        self._snapshots = 0
        self._saving = False
        self._closed = False
        self._discard_confirmed = False
        self.setAcceptDrops(True)

        intro = QLabel("Add one or more clear photos of the face: snapshots from the live "
                       "view or photo files. Photos from different days, light and angles "
                       "make recognition more reliable.")
        intro.setWordWrap(True)
        intro.setStyleSheet(HINT_STYLE)

        # -- name ------------------------------------------------------------------
        self.name_edit = QLineEdit(name)
        self.name_edit.setPlaceholderText("Full name, e.g. Ada Lovelace")
        self.name_edit.setClearButtonEnabled(True)
        completer = QCompleter(sorted(p.name for p in people), self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.name_edit.setCompleter(completer)
        self.name_edit.textChanged.connect(self._on_name_edit_text_changed)
        self.name_hint = QLabel()
        self.name_hint.setWordWrap(True)
        self.add_existing_check = QCheckBox("Add these photos to the existing person")
        self.add_existing_check.setChecked(existing)
        self.add_existing_check.toggled.connect(self._update_state)
        form = QFormLayout()
        form.addRow("Name:", self.name_edit)
        form.addRow("", self.name_hint)
        form.addRow("", self.add_existing_check)

        # -- sources -----------------------------------------------------------------
        # Not auto-default (see `button`): after the file chooser closes, "Add photos…" has
        # the focus, and Enter must save, not reopen the chooser.
        sp = QStyle.StandardPixmap
        self.snapshot_button = button(self, sp.SP_DialogYesButton, "Take snapshot",
                                      self._on_snapshot_button_clicked)
        self.snapshot_button.setToolTip("Use the face in the live view now (exactly one face, "
                                        "close enough and sharp)")
        self.files_button = button(self, sp.SP_DirOpenIcon, "Add photos…",
                                   self._on_files_button_clicked)
        self.remove_button = button(self, sp.SP_TrashIcon, "Remove selected", self.remove_selected)
        source_row = QHBoxLayout()
        source_row.addWidget(self.snapshot_button)
        source_row.addWidget(self.files_button)
        source_row.addStretch(1)
        source_row.addWidget(self.remove_button)

        self.thumbs = thumbnail_grid("acceptedFaces", THUMB, QSize(THUMB + 24, THUMB + 34))
        self.thumbs.setMinimumHeight(THUMB + 50)
        self.thumbs.itemSelectionChanged.connect(self._update_state)
        QShortcut(QKeySequence.StandardKey.Delete, self.thumbs, self.remove_selected)
        # The same-person warning of the selected (or first) flagged face.
        self.flag_box = QFrame()
        self.flag_box.setObjectName("flagBox")
        self.flag_box.setStyleSheet(
            f"#flagBox {{ background: {palette.FLAG_BOX_BACKGROUND}; border: 1px solid {palette.FLAG};"
            f" border-radius: 6px; }} #flagBox QLabel {{ color: {palette.FLAG_BOX_TEXT}; }}")
        self.flag_label = QLabel()
        self.flag_label.setWordWrap(True)
        self.drop_button = button(self, sp.SP_TrashIcon, "Drop this face", self.drop_flagged)
        self.keep_button = button(self, sp.SP_DialogApplyButton, "Keep it on purpose",
                                  self.keep_flagged)
        fb = QHBoxLayout(self.flag_box)
        fb.addWidget(self.flag_label, 1)
        fb.addWidget(self.drop_button)
        fb.addWidget(self.keep_button)
        self.flag_box.hide()
        self.progress = QProgressBar()
        self.progress.setFormat("Checking photos: %v of %m")
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.rejected_list = QListWidget()
        self.rejected_list.setObjectName("rejectedFiles")
        self.rejected_list.setMaximumHeight(110)
        self.rejected_list.hide()
        faces_box = QGroupBox("Faces")
        fl = QVBoxLayout(faces_box)
        fl.addLayout(source_row)
        fl.addWidget(self.thumbs, 1)
        fl.addWidget(self.flag_box)
        fl.addWidget(self.progress)
        fl.addWidget(self.status)
        fl.addWidget(self.rejected_list)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        # Enter saves wherever the focus is (a focused auto-default button would take
        # Enter instead: Cancel, after the button that had the focus was hidden).
        self.save_button.setDefault(True)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.save_hint = QLabel()
        self.save_hint.setStyleSheet(HINT_STYLE)
        self.save_hint.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.save_hint, 1)
        bottom.addWidget(self.buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(faces_box, 1)
        layout.addLayout(bottom)
        fit_to_screen(self, QSize(660, 600))
        self._on_name_edit_text_changed(name)
        if existing:
            self.name_edit.setReadOnly(True)
        else:
            self.name_edit.setFocus()

    # -- state -----------------------------------------------------------------------
    def existing_person(self) -> Person | None:
        """The enrolled person whose name is in the field, if any."""
        try:
            clean = normalize_name(self.name_edit.text())
        except PersonError:
            return None
        return self.people.get(name_key(clean))

    def busy(self) -> bool:
        """True while face checks (each face, or the faces compared) or the save are running."""
        return (bool(self._pending) or self._saving or self._checking_flags
                or self._recheck_timer.isActive())

    def _on_name_edit_text_changed(self, text: str) -> None:
        person = None
        if not text.strip():
            self.name_hint.setText("Enter the person's name.")
            self.name_hint.setStyleSheet(HINT_STYLE)
        else:
            try:
                clean = normalize_name(text)
            except PersonError as exc:
                self.name_hint.setText(str(exc).capitalize() + ".")
                self.name_hint.setStyleSheet(ERROR_STYLE)
            else:
                person = self.people.get(name_key(clean))
                if person is not None:
                    self.name_hint.setText(
                        f"{person.name} is already enrolled with {person.face_count} "
                        f"face{'s' if person.face_count != 1 else ''}. To add these photos to "
                        "them, tick the box below; otherwise choose a different name.")
                    self.name_hint.setStyleSheet(ERROR_STYLE if not
                                                 self.add_existing_check.isChecked() else HINT_STYLE)
                else:
                    self.name_hint.setText("A new person.")
                    self.name_hint.setStyleSheet(OK_STYLE)
        self.add_existing_check.setVisible(person is not None)
        if person is None:
            self.add_existing_check.setChecked(False)
        else:
            self.add_existing_check.setText(f"Add these photos to the existing person "
                                            f"“{person.name}”")
        self._schedule_recheck()  # the faces are now compared with someone else's
        self._update_state()

    def _update_state(self) -> None:
        reason = self.save_blocker()
        self.save_button.setEnabled(reason is None)
        self.save_hint.setText(reason or "")
        self.remove_button.setEnabled(bool(self.thumbs.selectedItems()) and not self._saving)
        self.snapshot_button.setEnabled(self.frame_provider is not None and not self._saving)
        self.files_button.setEnabled(not self._saving)
        person = self.existing_person()
        if person is not None:
            self.name_hint.setStyleSheet(HINT_STYLE if self.add_existing_check.isChecked()
                                         else ERROR_STYLE)
        self._update_flag_box()

    def save_blocker(self) -> str | None:
        """Why Save is disabled, or None if it is enabled."""
        text = self.name_edit.text()
        if not text.strip():
            return "Enter a name."
        try:
            normalize_name(text)
        except PersonError:
            return "Fix the name."
        if self.existing_person() is not None and not self.add_existing_check.isChecked():
            return "The name is taken: tick “add to the existing person” or change it."
        if self._saving:
            return "Saving…"
        if self._pending:
            return "Checking photos…"
        if not self.accepted_faces:
            return "Add at least one face."
        if self._checking_flags or self._recheck_timer.isActive():
            return "Comparing the faces…"
        open_flags = self.unresolved_flags()
        if open_flags:
            n = len(open_flags)
            return (f"{n} face{' is' if n == 1 else 's are'} flagged: drop "
                    f"{'it' if n == 1 else 'them'} or keep {'it' if n == 1 else 'them'} on purpose.")
        return None

    def unresolved_flags(self) -> list[str]:
        """Keys of the flagged faces the user has neither dropped nor kept."""
        return [a.key for a in self.accepted_faces if a.key in self.flags and a.key not in self.kept]

    # -- adding faces ----------------------------------------------------------------
    def _on_files_button_clicked(self) -> None:
        paths = self._ask_files()
        if paths:
            self.add_files(paths)

    def _ask_files(self) -> list[str]:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add photos", str(Path.home()), f"Images ({patterns});;All files (*)")
        return paths

    def add_files(self, paths: Sequence[str | Path]) -> None:
        """Check photo files in the worker, one job per file (the live view keeps running)."""
        known = {a.key for a in self.accepted_faces}
        fresh = []
        for p in map(str, paths):
            if p in known or p in fresh:
                self._reject(f"{display_name(Path(p).name)}: already added")
            else:
                fresh.append(p)
        if not fresh:
            return
        if not self._files_total or self._files_done >= self._files_total:
            self._files_total = self._files_done = 0
        self._files_total += len(fresh)
        self.progress.setRange(0, self._files_total)
        self.progress.setValue(self._files_done)
        self.progress.setVisible(self._files_total > 1)
        self.status.setText(f"Checking {len(fresh)} photo{'s' if len(fresh) != 1 else ''}…")
        self.status.setStyleSheet(HINT_STYLE)
        for path in fresh:
            self._queue_check(
                # Group photos are refused: "the largest face" of a photo of several
                # people risks storing the wrong person under this name.
                lambda rec, reply, path=path: rec.prepare_file(
                    path, PHOTO_OF_ONE, label=display_name(Path(path).name)),
                key=path, label=display_name(Path(path).name), is_file=True)
        self._update_state()

    def _on_snapshot_button_clicked(self) -> None:
        frame = self.frame_provider() if self.frame_provider else None
        self.take_snapshot(frame)

    def take_snapshot(self, frame: np.ndarray | str | None) -> None:
        """Check one frame of the live feed: exactly one face, large and sharp enough.

        *frame* may instead say why there is no picture (a stopped source): that is shown.
        """
        if frame is None:
            frame = "No live picture: open a camera or a video first."
        if isinstance(frame, str):
            self._set_status(frame, error=True)
            return
        self._snapshots += 1
        n = self._snapshots
        frame = frame.copy()
        self._queue_check(
            lambda rec, reply: rec.prepare_image(frame, "camera", SNAPSHOT),
            key=f"camera-{n}", label=f"Snapshot {n}", is_file=False)
        self._update_state()

    def _queue_check(self, job: Callable, *, key: str, label: str, is_file: bool) -> None:
        holder: list[Reply] = []

        # The callbacks are plain functions, not slots of this dialog, so Qt does not
        # disconnect them when the dialog is deleted: they check `_closed` first.
        def done(result: PreparedFace) -> None:
            if self._closed:
                return
            self._finish_check(holder[0], is_file)
            self._accept(AcceptedFace(result.face, result.crop, label, key))

        def failed(reason: str) -> None:
            if self._closed:
                return
            self._finish_check(holder[0], is_file)
            if is_file and not reason.startswith(f"{label}:"):
                reason = f"{label}: {reason}"  # every rejected file is named
            self._reject(reason if is_file else f"{label} refused: {reason}", snapshot=not is_file)

        reply = self.worker.call(job, on_done=done, on_error=failed)
        holder.append(reply)
        self._pending.append(reply)

    def _finish_check(self, reply: Reply, is_file: bool) -> None:
        if reply in self._pending:
            self._pending.remove(reply)
        if is_file:
            self._files_done += 1
            self.progress.setValue(self._files_done)
            if self._files_done >= self._files_total:
                self.progress.hide()

    def _summarise(self) -> None:
        n_ok, n_bad = len(self.accepted_faces), self.rejected_list.count()
        n_flag = len(self.unresolved_flags())
        parts = []
        if n_ok:
            parts.append(f"{n_ok} face{'s' if n_ok != 1 else ''} ready to save"
                         + (f", {n_flag} of them flagged (see the warning)" if n_flag else ""))
        if n_bad:
            parts.append(f"{n_bad} photo{'s' if n_bad != 1 else ''} not used (reasons below)")
        if parts:
            self._set_status("; ".join(parts) + ".", error=False, ok=n_bad == 0 and not n_flag)
        elif not self._pending:
            self._set_status("", error=False)

    def _accept(self, item: AcceptedFace) -> None:
        self.accepted_faces.append(item)
        pix = QPixmap.fromImage(rgb_to_qimage(item.crop)).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)
        entry = QListWidgetItem(QIcon(pix), item.label)
        entry.setData(Qt.ItemDataRole.UserRole, item.key)
        entry.setData(Qt.ItemDataRole.UserRole + 1, pix)
        entry.setToolTip(item.label)
        self.thumbs.addItem(entry)
        if not self._pending:
            self._summarise()
        self._schedule_recheck()
        self._update_state()
        self.checked.emit()

    # -- same-person checks ------------------------------------------------------------
    def _schedule_recheck(self) -> None:
        """Compare the faces again shortly (after the name or the set of faces changed)."""
        if self._closed or self._saving:
            return
        self._check_seq += 1  # an answer already on its way is out of date
        if self.accepted_faces:
            self._recheck_timer.start()
        else:
            self._recheck_timer.stop()
            self._apply_flags(self._check_seq, [], [])
        self._update_state()

    def _recheck(self) -> None:
        """Run the same-person checks of the accepted faces, as they would be saved."""
        faces = list(self.accepted_faces)
        if not faces:
            return
        try:
            name: str | None = normalize_name(self.name_edit.text())
        except PersonError:
            name = None  # no valid name yet: compare the faces with each other and everyone
        seq = self._check_seq
        keys = [a.key for a in faces]
        embeddings = [a.face.embedding for a in faces]
        self._checking_flags = True

        def job(rec: Recognizer, reply: Reply) -> list[Flag | None]:
            return rec.check_faces(name, embeddings)

        def done(flags: list[Flag | None]) -> None:
            if not self._closed:
                self._apply_flags(seq, keys, flags)

        def failed(message: str) -> None:
            if not self._closed and seq == self._check_seq:
                self._checking_flags = False
                self._set_status(f"The faces could not be compared: {message}", error=True)
                self._update_state()

        self.worker.call(job, on_done=done, on_error=failed)

    def _apply_flags(self, seq: int, keys: list[str], flags: list[Flag | None]) -> None:
        if seq != self._check_seq:
            return  # the faces or the name changed meanwhile: a newer check follows
        self._checking_flags = False
        self.flags = {k: f for k, f in zip(keys, flags) if f is not None}
        self.kept &= set(self.flags)
        self._refresh_thumbs()
        if not self._pending:
            self._summarise()
        self._update_state()
        self.flags_checked.emit()

    def _refresh_thumbs(self) -> None:
        for i in range(self.thumbs.count()):
            item = self.thumbs.item(i)
            key = item.data(Qt.ItemDataRole.UserRole)
            pix = item.data(Qt.ItemDataRole.UserRole + 1)
            label = next((a.label for a in self.accepted_faces if a.key == key), item.text())
            flag = self.flags.get(key)
            if flag is None:
                item.setIcon(QIcon(pix))
                item.setText(label)
                item.setToolTip(label)
            else:
                kept = key in self.kept
                item.setIcon(flagged_icon(pix, kept))
                item.setText(f"{label} (kept)" if kept else f"⚠ {label}")
                item.setToolTip(f"{label}: {flag.reason}" + (" (kept on purpose)" if kept else ""))
        self._update_flag_box()

    def current_flagged(self) -> str | None:
        """The flagged face the warning panel is about: the selected one, else the first."""
        for item in self.thumbs.selectedItems():
            key = item.data(Qt.ItemDataRole.UserRole)
            if key in self.flags:
                return str(key)
        open_flags = self.unresolved_flags()
        return open_flags[0] if open_flags else None

    def _update_flag_box(self) -> None:
        key = self.current_flagged()
        if key is None:
            self.flag_box.hide()
            return
        label = next(a.label for a in self.accepted_faces if a.key == key)
        flag = self.flags[key]
        kept = key in self.kept
        self.flag_label.setText(f"<b>{label}</b> {flag.reason}."
                                + (" Kept on purpose." if kept else
                                   " Is it really this person?"))
        self.keep_button.setEnabled(not kept)
        self.flag_box.show()

    def drop_flagged(self) -> None:
        """Drop the flagged face the warning panel is about."""
        key = self.current_flagged()
        if key is not None:
            self._remove_keys({key})

    def keep_flagged(self) -> None:
        """Keep the flagged face the warning panel is about, on purpose."""
        key = self.current_flagged()
        if key is not None:
            self.kept.add(key)
            self._refresh_thumbs()
            self._update_state()

    def _reject(self, reason: str, snapshot: bool = False) -> None:
        self.rejected.append(reason)
        if snapshot:
            self._set_status(reason + ".", error=True)
        elif reason.endswith("already added"):
            self._set_status(reason + ".", error=True)
        else:
            icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
            self.rejected_list.addItem(QListWidgetItem(icon, reason))
            self.rejected_list.show()
            if not self._pending:
                self._summarise()
        self._update_state()
        self.checked.emit()

    def _set_status(self, text: str, *, error: bool, ok: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else OK_STYLE if ok else HINT_STYLE)

    def remove_selected(self) -> None:
        """Drop the selected thumbnails; they will not be saved."""
        self._remove_keys({it.data(Qt.ItemDataRole.UserRole) for it in self.thumbs.selectedItems()})

    def _remove_keys(self, keys: set[str]) -> None:
        for i in reversed(range(self.thumbs.count())):
            if self.thumbs.item(i).data(Qt.ItemDataRole.UserRole) in keys:
                self.thumbs.takeItem(i)
        self.accepted_faces = [a for a in self.accepted_faces if a.key not in keys]
        for key in keys:
            self.flags.pop(key, None)
        self._refresh_thumbs()
        self._schedule_recheck()  # the others are compared without the dropped faces
        if not self._pending:
            self._summarise()
        self._update_state()

    # -- saving ----------------------------------------------------------------------
    def save(self) -> None:
        """Store every accepted face under the name, in one transaction."""
        if self.save_blocker() is not None:
            return
        name = normalize_name(self.name_edit.text())
        faces = [a.face for a in self.accepted_faces]
        new_person = self.existing_person() is None or not self.add_existing_check.isChecked()
        self._saving = True
        self._update_state()
        self._set_status(f"Saving {len(faces)} face{'s' if len(faces) != 1 else ''} for {name}…",
                         error=False)

        def job(rec: Recognizer, reply: Reply) -> Person:
            return rec.enroll(name, faces, new_person=new_person)

        self.worker.call(job, on_done=self._on_save_done, on_error=self._on_save_failed,
                         people_changed=True)

    def _on_save_done(self, person: Person) -> None:
        self._saving = False
        if self._closed:  # closed while saving: the person is stored all the same
            return
        log.info("enrolled %d face(s) for %s", len(self.accepted_faces), person.name)
        self.saved.emit(person)
        self.accept()

    def _on_save_failed(self, message: str) -> None:
        self._saving = False
        if self._closed:
            return
        self._set_status(f"Nothing was saved: {message}", error=True)
        self._update_state()

    # -- closing ---------------------------------------------------------------------
    def _ask_discard(self, n: int) -> bool:
        answer = QMessageBox.question(
            self, "Discard the faces?",
            f"{n} face{'s have' if n != 1 else ' has'} not been saved. Close and discard "
            f"{'them' if n != 1 else 'it'}?",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Discard

    def confirm_discard(self) -> bool:
        """True if the dialog may close: no unsaved faces, or the user lets them go."""
        if self._discard_confirmed or self._closed or not self.accepted_faces:
            return True
        self._discard_confirmed = self._ask_discard(len(self.accepted_faces))
        return self._discard_confirmed

    def reject(self) -> None:  # noqa: D102 - Esc, Cancel and the window's close button
        if self._saving or self.confirm_discard():
            super().reject()

    def done(self, result: int) -> None:  # noqa: D102 - cancel checks still queued
        if self._saving and result != QDialog.DialogCode.Accepted:
            return  # the save is one transaction in flight: wait for its answer
        self._closed = True
        self._recheck_timer.stop()
        for reply in self._pending:
            reply.cancel()
        self._pending.clear()
        super().done(result)

    # -- drag and drop ---------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: D102
        if not self._saving and local_files(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001, D102
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: D102
        files = local_files(event)
        if files and not self._saving:
            event.acceptProposedAction()
            self.add_files(files)
