"""The people manager: who is enrolled, and each person's faces one by one.

Left: everyone, with a thumbnail and face count, searchable and sortable; rename,
delete (with confirmation, or the Delete key), add photos (also by dropping photo files
on the dialog). Right: the selected person's faces with source and date. A face that
fails the same-person checks against the person's other faces (`Recognizer.audit`) is
marked with the reason: it is probably a wrong photo, and can be removed, or moved to
the right person (after the same checks, so a move cannot spoil that person either).

Reads and changes go through the pipeline worker, which owns the store and the index,
so a change reaches the running recognizer at once. The dialog follows the store: any
change (here, in another window or by the command line) reloads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QKeyEvent, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QSplitter,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.pipeline.errors import PersonError
from app.pipeline.recognition.consistency import OUTDATED
from app.pipeline.storage.outdated import Outdated
from app.pipeline.types import normalize_name
from app.ui import palette
from app.ui.enroll_dialog import flagged_icon, local_files, thumbnail_grid
from app.ui.palette import ERROR_STYLE, HINT_STYLE, OK_STYLE, WARNING_STYLE, text_style
from app.ui.screen import fit_to_screen
from app.ui.widgets import button, confirm

if TYPE_CHECKING:
    from app.pipeline.recognition.consistency import Flag
    from app.pipeline.recognition.recognizer import PersonFaces, Recognizer
    from app.pipeline.types import FaceInfo, Person, PersonThumbnail
    from app.ui.worker import PipelineWorker, Reply

log = logging.getLogger(__name__)

THUMB = 56
FACE_THUMB = 88

#: Sort orders of the people list: label -> key function (and reverse).
SORTS: dict[str, tuple[Callable[[Person], object], bool]] = {
    "Name": (lambda p: p.name.casefold(), False),
    "Most faces": (lambda p: (p.face_count, p.name.casefold()), True),
    "Fewest faces": (lambda p: (p.face_count, p.name.casefold()), False),
    "Newest": (lambda p: p.created, True),
    "Oldest": (lambda p: p.created, False),
}


def _load_people(rec: Recognizer, reply: Reply) -> tuple[list[PersonThumbnail], Outdated]:
    """Everyone with their first thumbnail, and the faces an older version made (worker thread)."""
    return rec.people_with_thumbnails(), rec.outdated()


def _faces_text(n: int) -> str:
    return f"{n} face{'s' if n != 1 else ''}"


def _pixmap(jpeg: bytes | None, size: int) -> QPixmap | None:
    pix = QPixmap()
    if jpeg and pix.loadFromData(jpeg, "JPEG"):
        return pix.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)
    return None


class PeopleDialog(QDialog):
    """List, search, rename and delete people; see, remove and move their faces.

    Parameters
    ----------
    worker : PipelineWorker
        Owner of the store; every read and change goes through it.
    open_enroll : callable
        ``open_enroll(name_or_None, files)`` opens the enrollment dialog (for a new
        person, or to add photos to *name*), with *files* already added.
    """

    #: Emitted after the people list was (re)loaded.
    refreshed = Signal()
    #: Emitted after the selected person's faces were (re)loaded.
    faces_loaded = Signal()

    def __init__(self, worker: PipelineWorker, parent: QWidget | None = None, *,
                 open_enroll: Callable[..., object] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("peopleDialog")
        self.setWindowTitle("People")
        self.worker = worker
        self.open_enroll = open_enroll
        self.people: list[Person] = []
        self.outdated = Outdated()  # faces an older version of facerec enrolled
        self._warning = ""  # the status line's note about them
        self._thumbs: dict[int, bytes | None] = {}
        self.faces: list[FaceInfo] = []
        self.face_flags: dict[int, Flag] = {}
        self._faces_of: str | None = None  # whose faces are shown
        self._faces_seq = 0
        # Job callbacks are plain functions that Qt does not disconnect when the dialog
        # is deleted; they check this flag first.
        self._closed = False
        self.setAcceptDrops(True)

        # -- people ------------------------------------------------------------------
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search people")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(lambda _: self._fill_people())
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(list(SORTS))
        self.sort_combo.setToolTip("Sort the people by")
        self.sort_combo.currentTextChanged.connect(lambda _: self._fill_people())
        self.list = QListWidget()
        self.list.setObjectName("peopleList")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setAlternatingRowColors(True)
        self.list.itemSelectionChanged.connect(self._on_list_item_selection_changed)
        self.list.itemDoubleClicked.connect(lambda _item: self._on_rename_button_clicked())
        self.list.installEventFilter(self)  # Delete: delete the person (see eventFilter)
        self.empty_label = QLabel("Nobody is enrolled yet. Click “Enroll person…” to add "
                                  "someone from the live view or from photos, or drop photo "
                                  "files here.")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet(text_style(palette.HINT, "padding: 24px;"))
        self.no_match_label = QLabel("Nobody matches the search.")
        self.no_match_label.setStyleSheet(text_style(palette.HINT, "padding: 12px;"))
        self.no_match_label.hide()

        sp = QStyle.StandardPixmap
        self.enroll_button = button(self, sp.SP_FileDialogNewFolder, "Enroll person…",
                                    lambda: self._open_enroll(None))
        self.add_button = button(self, sp.SP_DirOpenIcon, "Add photos…", self._on_add_button_clicked)
        self.rename_button = button(self, sp.SP_FileDialogDetailedView, "Rename…",
                                    self._on_rename_button_clicked)
        self.delete_button = button(self, sp.SP_TrashIcon, "Delete…", self._on_delete_button_clicked)
        filters = QHBoxLayout()
        filters.addWidget(self.search_edit, 1)
        filters.addWidget(self.sort_combo)
        person_buttons = QHBoxLayout()
        for b in (self.enroll_button, self.add_button, self.rename_button, self.delete_button):
            person_buttons.addWidget(b)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addLayout(filters)
        lv.addWidget(self.list, 1)
        lv.addWidget(self.empty_label, 1)
        lv.addWidget(self.no_match_label)
        lv.addLayout(person_buttons)

        # -- faces of the selected person ---------------------------------------------
        self.faces_box = QGroupBox("Faces")
        self.face_list = thumbnail_grid("faceList", FACE_THUMB, QSize(FACE_THUMB + 40, FACE_THUMB + 48))
        self.face_list.setWordWrap(True)
        self.face_list.itemSelectionChanged.connect(self._update_buttons)
        self.face_list.itemSelectionChanged.connect(self._update_face_note)
        self.face_list.installEventFilter(self)  # Delete: remove the faces
        self.face_note = QLabel()
        self.face_note.setWordWrap(True)
        self.remove_face_button = button(self, sp.SP_TrashIcon, "Remove face…",
                                         self._on_remove_face_clicked)
        self.move_face_button = button(self, sp.SP_ArrowRight, "Move to…", self._on_move_face_clicked)
        face_buttons = QHBoxLayout()
        face_buttons.addStretch(1)
        face_buttons.addWidget(self.remove_face_button)
        face_buttons.addWidget(self.move_face_button)
        fv = QVBoxLayout(self.faces_box)
        fv.addWidget(self.face_list, 1)
        fv.addWidget(self.face_note)
        fv.addLayout(face_buttons)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.faces_box)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setChildrenCollapsible(False)

        self.status = QLabel()
        self.status.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(close)
        layout.addLayout(bottom)
        fit_to_screen(self, QSize(880, 560))
        worker.people_changed.connect(self._on_worker_people_changed)
        self._update_buttons()
        self.refresh()

    # -- loading -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload people and thumbnails from the store (through the worker)."""
        self.worker.call(_load_people, on_done=self._on_people_loaded,
                         on_error=self._show_error)

    def _on_worker_people_changed(self, _people: object) -> None:
        if not self._closed:
            self.refresh()

    def _on_people_loaded(self, loaded: tuple[list[tuple[Person, bytes | None]], Outdated]) -> None:
        if self._closed:
            return
        rows, self.outdated = loaded
        self.people = [p for p, _ in rows]
        self._thumbs = {p.id: jpeg for p, jpeg in rows}
        self._fill_people()
        # Said below the list unless the status line holds news of the user's last action.
        note = self.outdated.note()
        warning = f"{note[:1].upper()}{note[1:]}: they are marked ⚠ in the list." if note else ""
        if self.status.text() in ("", self._warning):
            self._show_warning(warning)
        self._warning = warning
        self.refreshed.emit()

    def _fill_people(self) -> None:
        selected = self.selected_name()
        needle = self.search_edit.text().strip().casefold()
        key, reverse = SORTS.get(self.sort_combo.currentText(), SORTS["Name"])
        shown = sorted((p for p in self.people if needle in p.name.casefold()), key=key,
                       reverse=reverse)
        placeholder = self.style().standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon)
        self.list.blockSignals(True)
        self.list.clear()
        for person in shown:
            pix = _pixmap(self._thumbs.get(person.id), THUMB)
            since = datetime.fromtimestamp(person.created).strftime("%d %b %Y")
            old = self.outdated.of(person.id)
            text = f"{person.name}\n{_faces_text(person.face_count)} · enrolled {since}"
            tip = person.name
            if old:
                every = old >= person.face_count
                text = f"⚠ {text}\n{'all' if every else old} by an older version: enroll again"
                tip += (f": {'every face' if every else _faces_text(old)} enrolled by an older version "
                        f"of facerec, not used for recognition"
                        + (" (not recognised at all)" if every else "")
                        + ". Add new photos of them, then remove the old faces.")
            item = QListWidgetItem(QIcon(pix) if pix is not None else placeholder, text)
            item.setData(Qt.ItemDataRole.UserRole, person.name)
            item.setToolTip(tip)
            item.setSizeHint(QSize(0, THUMB + 10))
            self.list.addItem(item)
            if person.name == selected:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        if self.list.count() and not self.list.selectedItems():
            self.list.setCurrentRow(0)
        self.list.blockSignals(False)
        self.list.setVisible(bool(shown))
        self.empty_label.setVisible(not self.people)
        self.no_match_label.setVisible(bool(self.people) and not shown)
        self._on_list_item_selection_changed()

    def _on_list_item_selection_changed(self) -> None:
        self._load_faces(self.selected_name())
        self._update_buttons()

    def _load_faces(self, name: str | None) -> None:
        """Show *name*'s faces, with the same-person flags of each (through the worker)."""
        self._faces_seq += 1
        seq = self._faces_seq
        self._faces_of = name
        if name is None:
            self._show_faces(None, [], {})
            return

        def job(rec: Recognizer, reply: Reply) -> PersonFaces:
            return rec.person_faces(name)

        def done(result: PersonFaces) -> None:
            if not self._closed and seq == self._faces_seq:
                self._show_faces(name, result.faces, result.flags)

        def failed(message: str) -> None:
            if not self._closed and seq == self._faces_seq:
                self._show_faces(name, [], {})
                self._show_error(message)
                self.refresh()  # removed meanwhile, most likely

        self.worker.call(job, on_done=done, on_error=failed)

    def _show_faces(self, name: str | None, faces: list[FaceInfo], flags: dict[int, Flag]) -> None:
        selected = set(self.selected_face_ids())
        self.faces, self.face_flags = faces, flags
        self.face_list.clear()
        placeholder = self.style().standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon)
        for face in faces:
            pix = _pixmap(face.thumbnail, FACE_THUMB)
            flag = flags.get(face.id)
            icon = placeholder if pix is None else flagged_icon(pix) if flag else QIcon(pix)
            when = datetime.fromtimestamp(face.created).strftime("%d %b %Y")
            source = face.source or "unknown source"
            item = QListWidgetItem(icon, f"{'⚠ ' if flag else ''}{source}\n{when}")
            item.setData(Qt.ItemDataRole.UserRole, face.id)
            item.setToolTip(f"Face {face.id}: {source}, added "
                            f"{datetime.fromtimestamp(face.created):%Y-%m-%d %H:%M}"
                            + (f"\n⚠ {flag.reason}" if flag else ""))
            self.face_list.addItem(item)
            item.setSelected(face.id in selected)
        self.faces_box.setTitle(f"Faces of {name} ({len(faces)})" if name else "Faces")
        self._update_face_note()
        self._update_buttons()
        self.faces_loaded.emit()

    def _update_face_note(self) -> None:
        """Under the faces: the selected flagged face's reason, or how many are flagged."""
        if self._faces_of is None:
            self.face_note.setText("Select a person to see their faces.")
            self.face_note.setStyleSheet(HINT_STYLE)
            return
        chosen = [i for i in self.selected_face_ids() if i in self.face_flags]
        n_old = sum(f.kind == OUTDATED for f in self.face_flags.values())
        n_flag = len(self.face_flags) - n_old
        if len(chosen) == 1:
            face = next(f for f in self.faces if f.id == chosen[0])
            flag = self.face_flags[chosen[0]]
            text = (f"⚠ {face.source or 'This face'} {flag.reason}." if flag.kind == OUTDATED else
                    f"⚠ {face.source or 'This face'} {flag.reason}. "
                    "If it is a wrong photo, remove it or move it to the right person.")
        elif n_flag or n_old:
            text = " ".join(t for t in (
                f"⚠ {n_flag} face{'s do' if n_flag != 1 else ' does'} not look like the "
                "others: probably a wrong photo. Select it to see why." if n_flag else "",
                f"⚠ {n_old} face{'s were' if n_old != 1 else ' was'} enrolled by an older "
                "version of facerec and not used for recognition: add new photos of this "
                "person, then remove the old faces." if n_old else "") if t)
        else:
            text = "No face is added yet." if not self.faces else ""
        self.face_note.setText(text)
        self.face_note.setStyleSheet(WARNING_STYLE if n_flag or n_old else HINT_STYLE)

    # -- selection helpers ---------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of everyone enrolled, by name."""
        return sorted((p.name for p in self.people), key=str.casefold)

    def shown_names(self) -> list[str]:
        """Names in the list, as searched and sorted."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def selected_name(self) -> str | None:
        """The selected person's name."""
        items = self.list.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def select(self, name: str) -> None:
        """Select a person by name."""
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentItem(item)
                item.setSelected(True)

    def face_ids(self) -> list[int]:
        """Ids of the faces shown, in order."""
        return [f.id for f in self.faces]

    def selected_face_ids(self) -> list[int]:
        """Ids of the selected faces."""
        return [int(it.data(Qt.ItemDataRole.UserRole)) for it in self.face_list.selectedItems()]

    def select_faces(self, ids: Sequence[int]) -> None:
        """Select faces by id."""
        for i in range(self.face_list.count()):
            item = self.face_list.item(i)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) in set(ids))

    def _update_buttons(self) -> None:
        has = self.selected_name() is not None
        for b in (self.add_button, self.rename_button, self.delete_button):
            b.setEnabled(has)
        faces = bool(self.face_list.selectedItems())
        self.remove_face_button.setEnabled(faces)
        self.move_face_button.setEnabled(faces)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: D102
        # The Delete key (Backspace on a Mac keyboard) in either list acts on its selection.
        if (event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and (event.matches(QKeySequence.StandardKey.Delete)
                     or event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace))):
            if watched is self.list:
                self._on_delete_button_clicked()
                return True
            if watched is self.face_list:
                self._on_remove_face_clicked()
                return True
        return super().eventFilter(watched, event)

    def done(self, result: int) -> None:  # noqa: D102
        self._closed = True
        try:
            self.worker.people_changed.disconnect(self._on_worker_people_changed)
        except (RuntimeError, TypeError):
            pass
        super().done(result)

    def _show_error(self, message: str) -> None:
        if self._closed:
            return
        self.status.setText(message[:1].upper() + message[1:])
        self.status.setStyleSheet(ERROR_STYLE)

    def _show_warning(self, message: str) -> None:
        self.status.setText(message)
        self.status.setStyleSheet(WARNING_STYLE)

    def _show_info(self, message: str) -> None:
        if self._closed:
            return
        self.status.setText(message)
        self.status.setStyleSheet(OK_STYLE)

    def _failed_change(self, message: str) -> None:
        """A change was refused (someone may have changed the store): say why, reload."""
        self._show_error(message)
        if not self._closed:
            self.refresh()

    # -- people actions ------------------------------------------------------------------
    def _open_enroll(self, name: str | None, files: Sequence[str] = ()) -> None:
        if self.open_enroll is not None:
            self.open_enroll(name, files)

    def _on_add_button_clicked(self) -> None:
        name = self.selected_name()
        if name:
            self._open_enroll(name)

    def _ask_new_name(self, old: str) -> str | None:
        new, ok = QInputDialog.getText(self, "Rename", f"New name for {old}:",
                                       QLineEdit.EchoMode.Normal, old)
        return new if ok else None

    def _on_rename_button_clicked(self) -> None:
        old = self.selected_name()
        if not old:
            return
        new = self._ask_new_name(old)
        if new is not None and new.strip() and new.strip() != old:
            self.rename_person(old, new)

    def rename_person(self, old: str, new: str) -> None:
        """Rename a person; recognition uses the new name from the next frame."""
        try:
            new = normalize_name(new)
        except PersonError as exc:
            self._show_error(str(exc))
            return

        def job(rec: Recognizer, reply: Reply) -> Person:
            return rec.rename(old, new)

        self.worker.call(job, on_done=lambda p: self._show_info(f"Renamed {old} to {p.name}."),
                         on_error=self._failed_change, people_changed=True)

    def _confirm_delete(self, name: str) -> bool:
        person = next((p for p in self.people if p.name == name), None)
        count = person.face_count if person else 0
        return confirm(self, "Delete person",
                       f"Delete {name} and their {_faces_text(count)}?\n\n"
                       "They will be shown as Unknown from now on, and their rows of the "
                       "recognition log go too. This cannot be undone.")

    def _on_delete_button_clicked(self) -> None:
        name = self.selected_name()
        if name and self._confirm_delete(name):
            self.delete_person(name)

    def delete_person(self, name: str) -> None:
        """Delete a person and all their faces from the store and the index."""
        def job(rec: Recognizer, reply: Reply) -> Person:
            return rec.remove(name)

        self.worker.call(job, on_done=lambda p: self._show_info(
            f"Deleted {p.name} ({_faces_text(p.face_count)})."),
            on_error=self._failed_change, people_changed=True)

    # -- face actions --------------------------------------------------------------------
    def _confirm_remove_faces(self, ids: Sequence[int]) -> bool:
        name = self._faces_of or "this person"
        n = len(ids)
        return confirm(self, "Remove faces" if n != 1 else "Remove face",
                       f"Remove {'this face' if n == 1 else f'these {n} faces'} from {name}?"
                       "\n\nThis cannot be undone.")

    def _on_remove_face_clicked(self) -> None:
        ids = self.selected_face_ids()
        if ids and self._confirm_remove_faces(ids):
            self.remove_faces(ids)

    def remove_faces(self, ids: Sequence[int]) -> None:
        """Delete single faces (the person stays)."""
        ids = list(ids)
        name = self._faces_of

        def job(rec: Recognizer, reply: Reply) -> None:
            rec.remove_faces(ids)

        self.worker.call(job, on_done=lambda _: self._show_info(
            f"Removed {_faces_text(len(ids))} from {name}."),
            on_error=self._failed_change, people_changed=True)

    def _ask_move_target(self) -> str | None:
        """The person to move the selected faces to (a menu of people, or a new name)."""
        menu = QMenu(self)
        for person in sorted(self.people, key=lambda p: p.name.casefold()):
            if person.name != self._faces_of:
                menu.addAction(person.name).setData(person.name)
        menu.addSeparator()
        menu.addAction("New person…").setData("")
        chosen = menu.exec(self.move_face_button.mapToGlobal(
            self.move_face_button.rect().bottomLeft()))
        if chosen is None:
            return None
        name = chosen.data()
        if name:
            return str(name)
        new, ok = QInputDialog.getText(self, "Move to a new person", "Name:",
                                       QLineEdit.EchoMode.Normal, "")
        return new if ok and new.strip() else None

    def _on_move_face_clicked(self) -> None:
        ids = self.selected_face_ids()
        if ids:
            target = self._ask_move_target()
            if target:
                self.move_faces(ids, target)

    def _confirm_flagged_move(self, to: str, reasons: list[str]) -> bool:
        answer = QMessageBox.warning(
            self, "Move these faces?",
            f"Moved to {to}, these faces would not fit:\n\n" + "\n".join(reasons)
            + f"\n\nMove them to {to} anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def move_faces(self, ids: Sequence[int], to: str, *, force: bool = False) -> None:
        """Give faces to *to* (created if missing), after the same-person checks."""
        try:
            to = normalize_name(to)
        except PersonError as exc:
            self._show_error(str(exc))
            return
        ids = list(ids)

        def job(rec: Recognizer, reply: Reply) -> tuple[Person | None, list[str]]:
            if not force:
                flags = rec.check_move(ids, to)
                reasons = [f"face {i}: {f.reason}" for i, f in zip(ids, flags) if f is not None]
                if reasons:
                    return None, reasons
            return rec.move_faces(ids, to), []

        def done(result: tuple[Person | None, list[str]]) -> None:
            person, reasons = result
            if self._closed:
                return
            if person is None:
                if self._confirm_flagged_move(to, reasons):
                    self.move_faces(ids, to, force=True)
                return
            self._show_info(f"Moved {_faces_text(len(ids))} to {person.name} "
                            f"({_faces_text(person.face_count)} now).")

        self.worker.call(job, on_done=done, on_error=self._failed_change, people_changed=True)

    # -- drag and drop -------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: D102
        if local_files(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001, D102
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: D102
        """Photos dropped here are added to the selected person (or a new one)."""
        files = local_files(event)
        if files:
            event.acceptProposedAction()
            self._open_enroll(self.selected_name(), [str(Path(f)) for f in files])
