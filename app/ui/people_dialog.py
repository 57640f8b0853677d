"""The people manager: who is enrolled, with thumbnails, face counts and actions.

Rename, delete (with confirmation) and add more photos.

Reads and changes go through the pipeline worker, which owns the store and the index,
so a rename or delete reaches the running recognizer at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.pipeline.errors import PersonError
from app.pipeline.store import normalize_name

if TYPE_CHECKING:
    from app.pipeline.recognizer import Recognizer
    from app.pipeline.store import Person
    from app.ui.worker import PipelineWorker, Reply

log = logging.getLogger(__name__)

THUMB = 56


def _load_people(rec: Recognizer, reply: Reply) -> list[tuple[Person, bytes | None]]:
    """Everyone with their first thumbnail (worker thread)."""
    return [(p, rec.store.thumbnail(p.id)) for p in rec.people()]


class PeopleDialog(QDialog):
    """List, rename and delete enrolled people.

    Parameters
    ----------
    worker : PipelineWorker
        Owner of the store; every read and change goes through it.
    open_enroll : callable
        ``open_enroll(name_or_None)`` opens the enrollment dialog (for a new person, or to
        add photos to *name*).
    """

    #: Emitted after the list was (re)loaded.
    refreshed = Signal()

    def __init__(self, worker: PipelineWorker, parent: QWidget | None = None, *,
                 open_enroll: Callable[[str | None], None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("peopleDialog")
        self.setWindowTitle("People")
        self.worker = worker
        self.open_enroll = open_enroll
        self.people: list[Person] = []
        # Job callbacks are plain functions that Qt does not disconnect when the dialog
        # is deleted; they check this flag first.
        self._closed = False

        self.list = QListWidget()
        self.list.setObjectName("peopleList")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setAlternatingRowColors(True)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.list.itemDoubleClicked.connect(lambda _item: self._on_rename_button_clicked())
        self.empty_label = QLabel("Nobody is enrolled yet. Click “Enroll person…” to add "
                                  "someone from the live view or from photos.")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #6b7280; padding: 24px;")

        st = self.style()
        self.enroll_button = QPushButton(
            st.standardIcon(QStyle.StandardPixmap.SP_FileDialogNewFolder), "Enroll person…")
        self.enroll_button.clicked.connect(lambda: self._open_enroll(None))
        self.add_button = QPushButton(
            st.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), "Add photos…")
        self.add_button.clicked.connect(self._on_add_button_clicked)
        self.rename_button = QPushButton(
            st.standardIcon(QStyle.StandardPixmap.SP_FileDialogDetailedView), "Rename…")
        self.rename_button.clicked.connect(self._on_rename_button_clicked)
        self.delete_button = QPushButton(
            st.standardIcon(QStyle.StandardPixmap.SP_TrashIcon), "Delete…")
        self.delete_button.clicked.connect(self._on_delete_button_clicked)
        side = QVBoxLayout()
        for b in (self.enroll_button, self.add_button, self.rename_button, self.delete_button):
            side.addWidget(b)
        side.addStretch(1)

        self.status = QLabel()
        self.status.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        row = QHBoxLayout()
        lists = QVBoxLayout()
        lists.addWidget(self.list, 1)
        lists.addWidget(self.empty_label, 1)
        row.addLayout(lists, 1)
        row.addLayout(side)
        layout = QVBoxLayout(self)
        layout.addLayout(row, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(close)
        layout.addLayout(bottom)
        self.resize(560, 460)
        worker.people_changed.connect(self._on_worker_people_changed)
        self.refresh()

    # -- loading -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload people and thumbnails from the store (through the worker)."""
        self.worker.call(_load_people, on_done=self._on_people_loaded,
                         on_error=self._show_error)

    def _on_worker_people_changed(self, _people: object) -> None:
        if not self._closed:
            self.refresh()

    def _on_people_loaded(self, rows: list[tuple[Person, bytes | None]]) -> None:
        if self._closed:
            return
        selected = self.selected_name()
        self.list.clear()
        self.people = [p for p, _ in rows]
        placeholder = self.style().standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon)
        for person, jpeg in rows:
            icon = placeholder
            if jpeg:
                pix = QPixmap()
                if pix.loadFromData(jpeg, "JPEG"):
                    icon = QIcon(pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation))
            since = datetime.fromtimestamp(person.created).strftime("%d %b %Y")
            item = QListWidgetItem(
                icon, f"{person.name}\n{person.face_count} face"
                f"{'s' if person.face_count != 1 else ''} · enrolled {since}")
            item.setData(Qt.ItemDataRole.UserRole, person.name)
            item.setSizeHint(QSize(0, THUMB + 10))
            self.list.addItem(item)
            if person.name == selected:
                item.setSelected(True)
        if self.list.count() and not self.list.selectedItems():
            self.list.setCurrentRow(0)
        self.list.setVisible(bool(rows))
        self.empty_label.setVisible(not rows)
        self._update_buttons()
        self.refreshed.emit()

    def names(self) -> list[str]:
        """Names in the list, in order."""
        return [p.name for p in self.people]

    def selected_name(self) -> str | None:
        """The selected person's name."""
        items = self.list.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def select(self, name: str) -> None:
        """Select a person by name."""
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) == name)

    def _update_buttons(self) -> None:
        has = self.selected_name() is not None
        for b in (self.add_button, self.rename_button, self.delete_button):
            b.setEnabled(has)

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
        self.status.setText(message)
        self.status.setStyleSheet("color: #dc2626;")

    def _show_info(self, message: str) -> None:
        if self._closed:
            return
        self.status.setText(message)
        self.status.setStyleSheet("color: #16a34a;")

    # -- actions -----------------------------------------------------------------------
    def _open_enroll(self, name: str | None) -> None:
        if self.open_enroll is not None:
            self.open_enroll(name)

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
                         on_error=self._show_error, people_changed=True)

    def _confirm_delete(self, name: str) -> bool:
        person = next((p for p in self.people if p.name == name), None)
        count = person.face_count if person else 0
        answer = QMessageBox.question(
            self, "Delete person",
            f"Delete {name} and their {count} face{'s' if count != 1 else ''}?\n\n"
            "They will be shown as Unknown from now on. This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _on_delete_button_clicked(self) -> None:
        name = self.selected_name()
        if name and self._confirm_delete(name):
            self.delete_person(name)

    def delete_person(self, name: str) -> None:
        """Delete a person and all their faces from the store and the index."""
        def job(rec: Recognizer, reply: Reply) -> Person:
            return rec.remove(name)

        self.worker.call(job, on_done=lambda p: self._show_info(
            f"Deleted {p.name} ({p.face_count} face{'s' if p.face_count != 1 else ''})."),
            on_error=self._show_error, people_changed=True)
