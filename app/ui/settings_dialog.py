"""The settings dialog: recognition, camera and threads; the log's retention; expert options."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import QSize
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config import DEFAULT_MATCH_THRESHOLD, Settings
from app.ui.screen import fit_to_screen

SEARCH_MODES = (
    ("auto", "Automatic (exact for small galleries, HNSW for large)"),
    ("exact", "Exact (compare with every stored face)"),
    ("hnsw", "HNSW (approximate, fast for thousands of faces)"),
)


class SettingsDialog(QDialog):
    """Edit a copy of `Settings`; read the result with `settings()` after accept."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self._original = settings.validated()
        s = self._original
        defaults = Settings()

        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.01)
        self.threshold.setDecimals(2)
        self.threshold.setValue(s.match_threshold)
        self.threshold.setToolTip("Cosine similarity a face must reach to be named; below "
                                  "it the face is shown as Unknown. Higher: fewer false "
                                  "names, more Unknowns.")
        reset = QPushButton(f"Default ({DEFAULT_MATCH_THRESHOLD:.2f})")
        reset.clicked.connect(lambda: self.threshold.setValue(DEFAULT_MATCH_THRESHOLD))
        row = QHBoxLayout()
        row.addWidget(self.threshold, 1)
        row.addWidget(reset)
        self.threshold_hint = QLabel(f"Calibrated default: {DEFAULT_MATCH_THRESHOLD:.2f}")
        self.threshold_hint.setStyleSheet("color: #6b7280;")

        self.confidence = QDoubleSpinBox()
        self.confidence.setRange(0.05, 0.99)
        self.confidence.setSingleStep(0.05)
        self.confidence.setDecimals(2)
        self.confidence.setValue(s.detection_confidence)
        self.confidence.setToolTip(f"Minimum face detector score (default "
                                   f"{defaults.detection_confidence:.2f}).")

        self.search = QComboBox()
        for key, label in SEARCH_MODES:
            self.search.addItem(label, key)
        self.search.setCurrentIndex(max(0, self.search.findData(s.search)))

        self.width_box = QSpinBox()
        self.width_box.setRange(160, 7680)
        self.width_box.setValue(s.camera_width)
        self.height_box = QSpinBox()
        self.height_box.setRange(120, 4320)
        self.height_box.setValue(s.camera_height)
        res = QHBoxLayout()
        res.addWidget(self.width_box)
        res.addWidget(QLabel("×"))
        res.addWidget(self.height_box)
        res.addStretch(1)

        self.threads = QSpinBox()
        self.threads.setRange(0, 64)
        self.threads.setSpecialValueText(f"Automatic ({os.cpu_count() or 1} cores)")
        self.threads.setValue(s.threads)

        form = QFormLayout()
        form.addRow("Match threshold:", row)
        form.addRow("", self.threshold_hint)
        form.addRow("Detection confidence:", self.confidence)
        form.addRow("Search:", self.search)
        form.addRow("Camera resolution:", res)
        note = QLabel("The camera resolution applies the next time a camera is opened.")
        note.setStyleSheet("color: #6b7280;")
        note.setWordWrap(True)
        form.addRow("", note)
        form.addRow("Inference threads:", self.threads)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self._build_log_group(s))
        layout.addWidget(self._build_expert_group(s))
        layout.addWidget(buttons)
        fit_to_screen(self, QSize(560, self.sizeHint().height()))

    # Groups added after the recognition settings, each on its own (easy to merge).
    def _build_log_group(self, s: Settings) -> QGroupBox:
        self.retention = QSpinBox()
        self.retention.setRange(0, 3650)
        self.retention.setSuffix(" days")
        self.retention.setSpecialValueText("Keep every row")
        self.retention.setValue(s.log_retention_days)
        self.retention.setToolTip("Rows of the recognition log older than this are deleted "
                                  "(when the app starts, and every hour).")
        box = QGroupBox("Recognition log")
        form = QFormLayout(box)
        form.addRow("Keep rows for:", self.retention)
        return box

    def _build_expert_group(self, s: Settings) -> QGroupBox:
        self.show_candidates = QCheckBox("Show the best candidate of Unknown faces")
        self.show_candidates.setChecked(s.show_candidates)
        self.show_candidates.setToolTip(
            "Label an Unknown face with the enrolled person it resembles most and their "
            "score, e.g. “Unknown · Ada? 0.47”: how close it came to being named.")
        box = QGroupBox("Expert")
        lay = QVBoxLayout(box)
        lay.addWidget(self.show_candidates)
        return box

    def restore_defaults(self) -> None:
        """Put every field back to its default."""
        d = Settings()
        self.threshold.setValue(d.match_threshold)
        self.confidence.setValue(d.detection_confidence)
        self.search.setCurrentIndex(self.search.findData(d.search))
        self.width_box.setValue(d.camera_width)
        self.height_box.setValue(d.camera_height)
        self.threads.setValue(d.threads)
        self.retention.setValue(d.log_retention_days)
        self.show_candidates.setChecked(d.show_candidates)

    def settings(self) -> Settings:
        """The settings as edited."""
        return replace(
            self._original,
            match_threshold=round(self.threshold.value(), 2),
            detection_confidence=round(self.confidence.value(), 2),
            search=str(self.search.currentData()),
            camera_width=self.width_box.value(),
            camera_height=self.height_box.value(),
            threads=self.threads.value(),
            log_retention_days=self.retention.value(),
            show_candidates=self.show_candidates.isChecked(),
        ).validated()
