"""The recognition log: who was seen, when, with what similarity; one row per appearance.

`AppearanceTracker` is plain Python (testable without Qt): a person's appearance starts
when they are seen and ends once they have been absent for `GAP_S` seconds, so a person
standing in front of the camera for a minute makes one row, not 1,800.

Unknown faces are logged too, as one "Unknown" appearance per stretch of time in which
at least one unknown face is visible: without a tracker we cannot tell two strangers
apart, and a row per unknown face per frame would bury the named rows.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from app.pipeline.types import FrameResult

log = logging.getLogger(__name__)

#: Seconds a person must be absent before seeing them again counts as a new appearance.
GAP_S = 2.0
UNKNOWN = "Unknown"
CSV_HEADER = ("time", "name", "best_similarity", "seconds_seen", "source")


@dataclass
class Appearance:
    """One continuous stretch of time in which a person (or an unknown face) was seen."""

    name: str
    first_seen: datetime
    best_similarity: float
    source: str
    started: float  # monotonic
    last_seen: float  # monotonic
    frames: int = 1
    known: bool = True
    row: int = field(default=-1, repr=False)

    @property
    def duration(self) -> float:
        """Seconds between the first and the last sighting."""
        return self.last_seen - self.started


class AppearanceTracker:
    """Turn per-frame results into appearances.

    Parameters
    ----------
    gap : float
        Absence (seconds) that ends an appearance.
    clock : callable
        Monotonic clock (injectable for tests).
    """

    def __init__(self, gap: float = GAP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.gap = gap
        self.clock = clock
        self.appearances: list[Appearance] = []
        self._open: dict[str, Appearance] = {}

    def update(self, result: FrameResult, source: str = "") -> tuple[list[Appearance], list[Appearance]]:
        """Account for one frame.

        Returns
        -------
        new, updated : list of Appearance
            Appearances that started with this frame, and open ones it extended.
        """
        now = self.clock()
        best: dict[str, tuple[float, bool]] = {}
        for face in result.faces:
            key = face.name or UNKNOWN
            sim = float(face.similarity) if face.name else float("nan")
            prev = best.get(key)
            if prev is None or (face.name and sim > prev[0]):
                best[key] = (sim, face.name is not None)
        new, updated = [], []
        for key, (sim, known) in best.items():
            app = self._open.get(key)
            if app is not None and now - app.last_seen <= self.gap:
                app.last_seen = now
                app.frames += 1
                if known and sim > app.best_similarity:
                    app.best_similarity = sim
                updated.append(app)
            else:
                app = Appearance(key, datetime.now(), sim, source, now, now, known=known)
                self._open[key] = app
                self.appearances.append(app)
                new.append(app)
        return new, updated

    def reset(self) -> None:
        """Forget everything."""
        self.appearances.clear()
        self._open.clear()

    def write_csv(self, path: Path) -> int:
        """Write all appearances to *path*; return the number of rows."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER)
            for a in self.appearances:
                writer.writerow([a.first_seen.isoformat(timespec="seconds"), a.name,
                                 "" if not a.known else f"{a.best_similarity:.3f}",
                                 f"{a.duration:.1f}", a.source])
        return len(self.appearances)


class RecognitionLogPanel(QWidget):
    """A table of appearances with Export CSV and Clear buttons."""

    COLUMNS = ("Time", "Name", "Similarity", "Seen for")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tracker = AppearanceTracker()
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        self.summary = QLabel("Nobody seen yet")
        self.summary.setStyleSheet("color: #6b7280;")
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    def add_result(self, result: FrameResult, source: str = "") -> None:
        """Account for one processed frame."""
        new, updated = self.tracker.update(result, source)
        for app in new:
            # Newest first: insert at the top and shift the stored row numbers.
            for other in self.tracker.appearances:
                if other.row >= 0:
                    other.row += 1
            app.row = 0
            self.table.insertRow(0)
            items = [QTableWidgetItem(app.first_seen.strftime("%H:%M:%S")),
                     QTableWidgetItem(app.name), QTableWidgetItem(""), QTableWidgetItem("")]
            if not app.known:
                for item in items:
                    item.setForeground(QColor("#ef4444"))
            for col, item in enumerate(items):
                self.table.setItem(0, col, item)
            self._refresh_row(app)
        for app in updated:
            self._refresh_row(app)
        if new:
            n = len(self.tracker.appearances)
            self.summary.setText(f"{n} appearance{'s' if n != 1 else ''}")

    def _refresh_row(self, app: Appearance) -> None:
        sim = self.table.item(app.row, 2)
        sim.setText(f"{app.best_similarity:.2f}" if app.known else "—")
        sim.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        dur = self.table.item(app.row, 3)
        dur.setText(f"{app.duration:.0f} s")
        dur.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def rows(self) -> list[tuple[str, str]]:
        """(name, similarity text) per row, newest first (for tests)."""
        return [(self.table.item(r, 1).text(), self.table.item(r, 2).text())
                for r in range(self.table.rowCount())]

    def clear(self) -> None:
        """Forget all appearances."""
        self.tracker.reset()
        self.table.setRowCount(0)
        self.summary.setText("Nobody seen yet")

    def export_csv(self, path: str | Path) -> int:
        """Write the log to a CSV file; return the number of rows."""
        n = self.tracker.write_csv(Path(path))
        log.info("exported %d appearances to %s", n, path)
        return n

    def _ask_csv_path(self) -> str:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export recognition log", f"recognition-log-{datetime.now():%Y%m%d-%H%M}.csv",
            "CSV files (*.csv)")
        return path

    def _on_export_clicked(self) -> None:
        path = self._ask_csv_path()
        if not path:
            return
        try:
            n = self.export_csv(path)
        except OSError as exc:
            self.summary.setText(f"Export failed: {exc.strerror or exc}")
            return
        self.summary.setText(f"Exported {n} row{'s' if n != 1 else ''} to {Path(path).name}")
