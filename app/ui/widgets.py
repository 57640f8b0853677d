"""Small pieces the dialogs share: a question asked the same way everywhere, and buttons."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QPushButton, QStyle, QWidget


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Ask Yes / Cancel about something that cannot be undone; Cancel is the default."""
    answer = QMessageBox.question(
        parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def button(parent: QWidget, icon: QStyle.StandardPixmap, text: str,
           slot: Callable[[], object]) -> QPushButton:
    """A dialog's action button with a standard icon.

    It is never auto-default: in a dialog, Enter presses the default button (Save), not
    whichever button last had the focus (which would, say, reopen a file chooser).
    """
    b = QPushButton(parent.style().standardIcon(icon), text, parent)
    b.clicked.connect(lambda: slot())
    b.setAutoDefault(False)
    return b
