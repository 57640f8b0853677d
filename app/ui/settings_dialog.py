"""The settings dialog: strictness, detection, camera, threads, log, expert, shared gallery."""

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
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config import DEFAULT_FALSE_ACCEPT, Settings
from app.pipeline.errors import ModelError
from app.pipeline.recognition.decision import describe_target, load_calibration
from app.ui.palette import HINT_STYLE
from app.ui.screen import fit_to_screen

#: Strictness choices: the share of strangers who may be named.
STRICTNESS = (0.01, 0.005, 0.001, 0.0001, 0.00001)

SEARCH_MODES = (
    ("auto", "Automatic (exact for small galleries, HNSW for large)"),
    ("exact", "Exact (compare with every stored face)"),
    ("hnsw", "HNSW (approximate, fast for thousands of faces)"),
)


class SettingsDialog(QDialog):
    """Edit a copy of `Settings`; read the result with `settings()` after accept."""

    def __init__(self, settings: Settings, parent: QWidget | None = None,
                 people: int | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self._original = settings.validated()
        self._people = people
        s = self._original
        defaults = Settings()

        self.strictness = QComboBox()
        choices = sorted(set(STRICTNESS) | {s.false_accept}, reverse=True)
        for rate in choices:
            label = describe_target(rate) + " may be named"
            if rate == DEFAULT_FALSE_ACCEPT:
                label += " (default)"
            self.strictness.addItem(label[0].upper() + label[1:], rate)
        self.strictness.setCurrentIndex(choices.index(s.false_accept))
        self.strictness.setToolTip(
            "How often a stranger may be given the name of someone enrolled. facerec keeps "
            "this share the same however many people are enrolled. Stricter: fewer false "
            "names, and more enrolled faces left Unknown.")
        self.rule_hint = QLabel()
        self.rule_hint.setStyleSheet(HINT_STYLE)
        self.rule_hint.setWordWrap(True)

        self.min_similarity = QDoubleSpinBox()
        self.min_similarity.setRange(0.0, 1.0)
        self.min_similarity.setSingleStep(0.01)
        self.min_similarity.setDecimals(2)
        self.min_similarity.setSpecialValueText("None")
        self.min_similarity.setValue(s.min_similarity)
        self.min_similarity.setToolTip(
            "For experts: a raw cosine similarity the best match must also reach (the number "
            "shown beside each name). It can only make naming stricter.")
        self.strictness.currentIndexChanged.connect(self._update_hint)
        self.min_similarity.valueChanged.connect(self._update_hint)
        self._update_hint()

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
        form.addRow("Strictness:", self.strictness)
        form.addRow("", self.rule_hint)
        form.addRow("Minimum similarity (expert):", self.min_similarity)
        form.addRow("Detection confidence:", self.confidence)
        form.addRow("Search:", self.search)
        form.addRow("Camera resolution:", res)
        note = QLabel("The camera resolution applies the next time a camera is opened.")
        note.setStyleSheet(HINT_STYLE)
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
        layout.addWidget(self._shared_gallery_group(s))
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

    def _update_hint(self) -> None:
        """Say what the strictness means now, in raw scores, for experts."""
        rate = float(self.strictness.currentData())
        try:
            cal = load_calibration()
        except ModelError as exc:
            self.rule_hint.setText(f"The decision rule's calibration is unavailable: {exc}")
            return
        n = self._people
        score = (f"best similarity − {cal.runner_up_weight:g} × the runner-up's"
                 if cal.runner_up_weight else "best similarity")
        if n:
            text = (f"With {n} {'person' if n == 1 else 'people'} enrolled, a face is named "
                    f"when its decision score ({score}) reaches {cal.threshold(n, rate):.3f}.")
        else:
            text = (f"A face is named when its decision score ({score}) reaches "
                    f"{cal.threshold(1, rate):.3f} with one person enrolled, "
                    f"{cal.threshold(100, rate):.3f} with 100.")
        self.rule_hint.setText(text)

    # -- the shared gallery -----------------------------------------------------------
    def _shared_gallery_group(self, s: Settings) -> QGroupBox:
        """Where the gallery lives: this computer, or a PostgreSQL database shared by many."""
        from app.pipeline.storage.pgstore import mask_url

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
        note.setStyleSheet(HINT_STYLE)
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
        self.strictness.setCurrentIndex(max(0, self.strictness.findData(d.false_accept)))
        self.min_similarity.setValue(d.min_similarity)
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
            false_accept=float(self.strictness.currentData()),
            min_similarity=round(self.min_similarity.value(), 2),
            detection_confidence=round(self.confidence.value(), 2),
            search=str(self.search.currentData()),
            camera_width=self.width_box.value(),
            camera_height=self.height_box.value(),
            threads=self.threads.value(),
            log_retention_days=self.retention.value(),
            show_candidates=self.show_candidates.isChecked(),
            store=self._store_value(),
        ).validated()
