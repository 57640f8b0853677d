"""The settings dialog: threshold, detection, search, camera, threads, shared gallery."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config import DEFAULT_MATCH_THRESHOLD, Settings

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
        layout.addWidget(self._shared_gallery_group(s))
        layout.addWidget(buttons)

    # -- the shared gallery -----------------------------------------------------------
    def _shared_gallery_group(self, s: Settings) -> QGroupBox:
        """Where the gallery lives: this computer, or a PostgreSQL database shared by many."""
        from app.pipeline.pgstore import mask_url

        box = QGroupBox("Shared gallery")
        box.setObjectName("sharedGalleryGroup")
        self.store_url = QLineEdit()
        self.store_url.setObjectName("storeUrl")
        self.store_url.setPlaceholderText("postgresql://user@host/facerec (empty: this computer only)")
        # A password in the saved URL is never shown; left untouched, it is kept.
        self._store_masked = mask_url(s.store) if s.store else ""
        self.store_url.setText(self._store_masked)
        self.store_url.setClearButtonEnabled(True)
        note = QLabel("Every workstation with the same URL shares one gallery and one recognition "
                      "log. Keep the password in ~/.pgpass or a service file, not here. Takes "
                      "effect the next time facerec starts; --store and FACEREC_STORE override it.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #6b7280;")
        inner = QVBoxLayout(box)
        inner.addWidget(self.store_url)
        inner.addWidget(note)
        return box

    def _store_value(self) -> str:
        text = self.store_url.text().strip()
        if text and text == self._store_masked:
            return self._original.store
        return text

    def restore_defaults(self) -> None:
        """Put every field back to its default."""
        d = Settings()
        self.threshold.setValue(d.match_threshold)
        self.confidence.setValue(d.detection_confidence)
        self.search.setCurrentIndex(self.search.findData(d.search))
        self.width_box.setValue(d.camera_width)
        self.height_box.setValue(d.camera_height)
        self.threads.setValue(d.threads)

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
            store=self._store_value(),
        ).validated()
