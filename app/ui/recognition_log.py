"""The recognition log panel: who was seen, when, with what similarity, for how long.

The rows live in the store (`FaceStore.sightings`), written by the pipeline worker
from `app.pipeline.recognition.appearances.AppearanceLog`: one row per appearance of a person, one
per stranger's track. The panel shows the newest `SHOWN_ROWS` of them: loaded from the
store when the window opens (so the log survives a restart) and updated as the worker
reports rows that started or changed. Clear asks first; Export CSV writes every row
the store keeps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.pipeline.storage import export
from app.ui import palette
from app.ui.widgets import confirm

if TYPE_CHECKING:
    from app.pipeline.recognition.recognizer import Recognizer
    from app.pipeline.types import Sighting
    from app.ui.worker import PipelineWorker, Reply

log = logging.getLogger(__name__)

UNKNOWN = "Unknown"
CSV_HEADER = ("time", "name", "best_similarity", "seconds_seen", "source")
#: Rows the panel shows (the store may keep more; Export CSV writes them all).
SHOWN_ROWS = 1000
UNKNOWN_COLOR = QColor(palette.UNKNOWN)


class ElidedLabel(QLabel):
    """A one-line label that never asks for more width: long text ends in "…".

    A plain QLabel grows its panel to fit whatever it says (a long file name after an
    export widened the log panel for good); this one keeps the width it is given.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(10)

    def setText(self, text: str) -> None:  # noqa: D102, N802
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: D102
        p = QPainter(self)
        p.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        p.drawText(rect, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), text)
        p.end()


def _display_name(row: Sighting) -> str:
    return row.name if row.person_id is not None and row.name else UNKNOWN


def write_csv(path: Path, rows: Sequence[Sighting]) -> int:
    """Write log rows (newest first) as CSV; return the number of rows.

    Owner-only and safe to open in a spreadsheet (`app.pipeline.storage.export`).
    """
    return export.write_csv(path, CSV_HEADER, (
        [datetime.fromtimestamp(r.started).isoformat(timespec="seconds"), _display_name(r),
         f"{r.similarity:.3f}" if r.person_id is not None else "",
         f"{r.last_seen - r.started:.1f}", r.source] for r in rows))


class RecognitionLogPanel(QWidget):
    """A table of appearances with Export CSV and Clear buttons.

    Parameters
    ----------
    worker : PipelineWorker or None
        Owner of the store: loads, clears and exports through it. Without one the panel
        only shows the rows it is given.
    """

    COLUMNS = ("Time", "Name", "Score", "Seen")
    #: Emitted after the rows were (re)loaded from the store, cleared or exported.
    changed = Signal()

    def __init__(self, worker: PipelineWorker | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self._rows: dict[str, Sighting] = {}
        self._order: list[str] = []  # newest first
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The name gets every pixel the short columns leave.
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(24)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.ask_and_export)
        self.clear_button = QPushButton("Clear…")
        self.clear_button.clicked.connect(self._on_clear_clicked)
        self.summary = ElidedLabel("Nobody seen yet")
        self.summary.setStyleSheet(palette.HINT_STYLE)
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    # -- rows ------------------------------------------------------------------------
    def reload(self) -> None:
        """Show the newest rows the store keeps (names as they are now)."""
        if self.worker is None:
            return

        def job(rec: Recognizer, reply: Reply) -> list[Sighting]:
            return rec.store.sightings(SHOWN_ROWS)

        self.worker.call(job, on_done=self.load, on_error=self._show_error)

    def load(self, rows: Sequence[Sighting]) -> None:
        """Replace the table with *rows* (newest first)."""
        self._rows = {r.id: r for r in rows}
        self._order = [r.id for r in rows]
        self.table.setRowCount(0)
        self.table.setRowCount(len(self._order))
        for i, rid in enumerate(self._order):
            self._fill(i, self._rows[rid])
        self._summarise()
        self.changed.emit()

    def upsert(self, rows: Sequence[Sighting]) -> None:
        """Add rows that started and update those that changed (from the worker)."""
        fresh = []
        for r in rows:
            old = self._rows.get(r.id)
            if old is not None and r.name is None and old.name is not None and r.person_id:
                r = _with_name(r, old.name)
            self._rows[r.id] = r
            if old is None:
                fresh.append(r.id)
            else:
                self._fill(self._order.index(r.id), r)
        for rid in sorted(fresh, key=lambda i: self._rows[i].started):
            self._order.insert(0, rid)
            self.table.insertRow(0)
            self._fill(0, self._rows[rid])
        while len(self._order) > SHOWN_ROWS:
            self._rows.pop(self._order.pop())
            self.table.removeRow(self.table.rowCount() - 1)
        if fresh:
            self._summarise()

    def _fill(self, i: int, r: Sighting) -> None:
        when = datetime.fromtimestamp(r.started)
        today = when.date() == datetime.now().date()
        name = _display_name(r)
        items = [QTableWidgetItem(when.strftime("%H:%M:%S" if today else "%d %b %H:%M")),
                 QTableWidgetItem(name),
                 QTableWidgetItem(f"{r.similarity:.2f}" if r.person_id is not None else "—"),
                 QTableWidgetItem(_duration(r.last_seen - r.started))]
        items[0].setToolTip(when.strftime("%Y-%m-%d %H:%M:%S"))
        items[1].setToolTip(f"{name}\n{r.frames} frame{'s' if r.frames != 1 else ''} · {r.source}"
                            + (f" · track {r.track}" if r.track is not None else ""))
        for col in (2, 3):
            items[col].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if r.person_id is None:
            for item in items:
                item.setForeground(UNKNOWN_COLOR)
        for col, item in enumerate(items):
            self.table.setItem(i, col, item)

    def _summarise(self) -> None:
        n = len(self._order)
        self.summary.setText(f"{n} appearance{'s' if n != 1 else ''}" if n else "Nobody seen yet")

    def rows(self) -> list[tuple[str, str]]:
        """(name, similarity text) per row, newest first (for tests)."""
        return [(self.table.item(r, 1).text(), self.table.item(r, 2).text())
                for r in range(self.table.rowCount())]

    def sightings(self) -> list[Sighting]:
        """The rows shown, newest first."""
        return [self._rows[i] for i in self._order]

    # -- clear -----------------------------------------------------------------------
    def _confirm_clear(self) -> bool:
        n = len(self._order)
        return confirm(self, "Clear the recognition log",
                       f"Delete all {n} row{'s' if n != 1 else ''} of the recognition log?\n\n"
                       "This cannot be undone. Export it first if you may need it.")

    def _on_clear_clicked(self) -> None:
        if self._order and self._confirm_clear():
            self.clear()

    def clear(self) -> None:
        """Delete every row, in the store too (no questions: the button asks)."""
        if self.worker is None:
            self.load([])
            return
        self.worker.clear_log(on_done=lambda n: self.load([]), on_error=self._show_error)

    # -- export ----------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> None:
        """Write every row the store keeps to a CSV file (in the worker)."""
        path = Path(path)
        if self.worker is None:
            self._on_exported((path, write_csv(path, self.sightings())))
            return

        def job(rec: Recognizer, reply: Reply) -> tuple[Path, int]:
            rows = rec.store.sightings(limit=2**62)
            try:
                return path, write_csv(path, rows)
            except OSError as exc:
                from app.pipeline.errors import FacerecError

                raise FacerecError(f"Export failed: {exc.strerror or exc}") from None

        self.worker.call(job, on_done=self._on_exported, on_error=self._show_error)

    def _on_exported(self, result: tuple[Path, int]) -> None:
        path, n = result
        log.info("exported %d appearances to %s", n, path)
        self.summary.setText(f"Exported {n} row{'s' if n != 1 else ''} to {path.name}")
        self.changed.emit()

    def _show_error(self, message: str) -> None:
        self.summary.setText(message)

    def _ask_csv_path(self) -> str:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export recognition log", f"recognition-log-{datetime.now():%Y%m%d-%H%M}.csv",
            "CSV files (*.csv)")
        return path

    def ask_and_export(self) -> None:
        """Ask where to save the log, then `export_csv` there (the menu's and the button's action)."""
        path = self._ask_csv_path()
        if path:
            self.export_csv(path)


def _with_name(r: Sighting, name: str) -> Sighting:
    from dataclasses import replace

    return replace(r, name=name)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 60:
        return f"{max(0.0, seconds):.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
