"""The live view: the newest frame, a box on every face, and plain state messages."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QContextMenuEvent,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractSlider,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import palette

if TYPE_CHECKING:
    from app.pipeline.types import FaceResult
    from app.ui.worker import FramePayload

log = logging.getLogger(__name__)

#: Known faces: a solid green box with "Name 0.83".
KNOWN_COLOR = QColor(palette.KNOWN)
#: Unknown faces: a red dashed box with "Unknown".
UNKNOWN_COLOR = QColor(palette.UNKNOWN)
BACKGROUND = QColor(palette.VIDEO_BACKGROUND)

Action = tuple[str, Callable[[], None]]


def rgb_to_qimage(frame: np.ndarray, copy: bool = True) -> QImage:
    """Wrap an RGB ``uint8`` array as a `QImage`.

    With *copy* the image owns a copy of the pixels; without, it reads the array's own
    memory, and the caller must keep the array alive and unchanged while the image is used.
    """
    if not frame.flags.c_contiguous:  # a contiguous copy would die with this call
        frame, copy = np.ascontiguousarray(frame), True
    h, w = frame.shape[:2]
    image = QImage(frame.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.copy() if copy else image


class MessageKind(Enum):
    """What a state message over the video is: it decides the icon."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    BUSY = "busy"


class MessagePanel(QFrame):
    """A rounded card over the video that explains a state and offers actions."""

    ICONS = {
        MessageKind.INFO: QStyle.StandardPixmap.SP_MessageBoxInformation,
        MessageKind.WARNING: QStyle.StandardPixmap.SP_MessageBoxWarning,
        MessageKind.ERROR: QStyle.StandardPixmap.SP_MessageBoxCritical,
        MessageKind.BUSY: QStyle.StandardPixmap.SP_BrowserReload,
    }

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("messagePanel")
        self.setStyleSheet(
            f"#messagePanel {{ background: {palette.PANEL_BACKGROUND}; border: 1px solid "
            f"{palette.PANEL_BORDER}; border-radius: 12px; }}"
            f"#messagePanel QLabel {{ color: {palette.PANEL_TEXT}; background: transparent; }}"
            "#messageTitle { font-size: 16px; font-weight: 600; }"
            "#messagePanel QPushButton { padding: 6px 14px; }"
        )
        self.icon = QLabel()
        self.title = QLabel()
        self.title.setObjectName("messageTitle")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setMinimumWidth(380)
        head = QHBoxLayout()
        head.addWidget(self.icon)
        head.addWidget(self.title, 1)
        self._buttons = QHBoxLayout()
        self._buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.setSpacing(10)
        layout.addLayout(head)
        layout.addWidget(self.text)
        layout.addLayout(self._buttons)
        self.buttons: dict[str, QPushButton] = {}
        self.kind: MessageKind | None = None
        self.hide()

    def show_message(self, kind: MessageKind, title: str, text: str,
                     actions: Sequence[Action] = ()) -> None:
        """Show a state, with the icon of its *kind*."""
        self.kind = kind
        icon = self.style().standardIcon(self.ICONS[kind])
        self.icon.setPixmap(icon.pixmap(QSize(32, 32)))
        self.title.setText(title)
        self.text.setText(text)
        self.text.setVisible(bool(text))
        for button in self.buttons.values():
            self._buttons.removeWidget(button)
            button.deleteLater()
        self.buttons = {}
        for i, (label, slot) in enumerate(actions):
            button = QPushButton(label, self)
            button.clicked.connect(slot)
            if i == 0:
                button.setDefault(True)
            self._buttons.addWidget(button)
            self.buttons[label] = button
        self.show()
        self.raise_()
        parent = self.parentWidget()
        if parent is not None:
            self._center(parent.size())

    def _center(self, size: QSize) -> None:
        # A word-wrapped QLabel under-reports its height for multi-paragraph text, so
        # measure the text at the chosen width and fix the label's height to it.
        w = min(max(self.text.sizeHint().width() + 40, 520), max(size.width() - 40, 200))
        m = self.layout().contentsMargins()
        inner = w - m.left() - m.right()
        fm = self.text.fontMetrics()
        text_h = fm.boundingRect(QRect(0, 0, inner, 100000),
                                 int(Qt.TextFlag.TextWordWrap), self.text.text()).height()
        self.text.setFixedHeight(text_h + 4)
        self.text.setMinimumWidth(0)
        head_h = max(self.icon.sizeHint().height(), self.title.sizeHint().height())
        buttons_h = max([b.sizeHint().height() for b in self.buttons.values()] or [0])
        parts = [head_h, text_h + 4 if self.text.isVisible() else 0, buttons_h]
        h = (m.top() + m.bottom() + sum(parts)
             + self.layout().spacing() * (sum(1 for p in parts if p) - 1))
        self.setGeometry((size.width() - w) // 2, max(0, (size.height() - h) // 2), w, h)


def face_label(face: FaceResult, show_candidate: bool = False) -> str:
    """The text on a face's box: "Name 0.83", "Unknown", or with its best candidate.

    A similarity that is not a number (a face the user named, with nothing yet to
    compare it to) is left out.
    """
    if face.name is not None:
        return face.name if math.isnan(face.similarity) else f"{face.name} {face.similarity:.2f}"
    if show_candidate and face.candidate is not None:
        return f"Unknown · {face.candidate}? {face.similarity:.2f}"
    return "Unknown"


class VideoView(QWidget):
    """Paints the newest frame with its faces, and state messages over it.

    The frame and the boxes come from the same `FramePayload`, so a box is always drawn
    on the picture it was computed on. The `QImage` is built here, in the GUI thread.
    """

    #: Right-click: (payload, the face under the pointer or None, global position).
    context_menu_requested = Signal(object, object, QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("videoView")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.payload: FramePayload | None = None
        self._image: QImage | None = None
        self.dimmed = False
        self.frames_painted = 0
        #: Expert setting: label Unknown faces with their best candidate and score.
        self.show_candidates = False
        self.message = MessagePanel(self)

    # -- content -------------------------------------------------------------------
    def set_payload(self, payload: FramePayload) -> None:
        """Show a new frame and its faces (GUI thread)."""
        self.payload = payload
        # No copy of the frame: the payload owns it (the worker never touches it again) and
        # is kept, with the image, until the next one replaces both.
        self._image = rgb_to_qimage(payload.frame, copy=False)
        self.dimmed = False
        self.update()

    def set_dimmed(self, dimmed: bool) -> None:
        """Grey out the last frame (stopped, ended, lost)."""
        self.dimmed = dimmed
        self.update()

    def show_message(self, kind: MessageKind, title: str, text: str = "",
                     actions: Sequence[Action] = ()) -> None:
        """Show a state message over the video."""
        self.message.show_message(kind, title, text, actions)

    def hide_message(self) -> None:
        """Hide the state message."""
        self.message.hide()

    def message_button(self, label: str) -> QPushButton:
        """The button labelled *label* in the current message (for tests and shortcuts)."""
        return self.message.buttons[label]

    def face_labels(self) -> list[str]:
        """The labels currently drawn, e.g. ``["Obama 0.82", "Unknown"]``."""
        if self.payload is None:
            return []
        return [face_label(f, self.show_candidates) for f in self.payload.result.faces]

    def face_at(self, pos: QPointF | QPoint) -> FaceResult | None:
        """The face whose box is under *pos* (widget coordinates); the smallest if nested."""
        if self.payload is None or self._image is None:
            return None
        target = self.image_rect()
        scale = target.width() / self._image.width()
        x, y = (pos.x() - target.x()) / scale, (pos.y() - target.y()) / scale
        hits = [f for f in self.payload.result.faces
                if f.box[0] <= x <= f.box[0] + f.box[2] and f.box[1] <= y <= f.box[1] + f.box[3]]
        return min(hits, key=lambda f: f.box[2] * f.box[3]) if hits else None

    def face_center(self, face: FaceResult) -> QPoint:
        """Where a face's box is drawn (its centre, widget coordinates)."""
        target = self.image_rect()
        scale = target.width() / self._image.width() if self._image is not None else 1.0
        x, y, w, h = face.box
        return QPoint(round(target.x() + (x + w / 2) * scale), round(target.y() + (y + h / 2) * scale))

    def annotated_image(self) -> QImage | None:
        """The current frame at its own resolution, with the boxes and names as shown."""
        if self._image is None or self.payload is None:
            return None
        image = self._image.copy()
        p = QPainter(image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        scale = max(1.0, image.height() / 480)
        self._paint_faces(p, QRectF(image.rect()), 1.0, pixel_size=round(15 * scale))
        p.end()
        return image

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: D102
        if self.payload is None:
            return
        self.context_menu_requested.emit(self.payload, self.face_at(event.pos()), event.globalPos())

    # -- Qt ------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: D102
        return QSize(960, 620)

    def resizeEvent(self, event) -> None:  # noqa: ANN001, D102
        super().resizeEvent(event)
        if self.message.isVisible():
            self.message._center(self.size())

    def image_rect(self) -> QRectF:
        """Where the frame is drawn: fitted into the widget, aspect ratio kept."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: ANN001, D102
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        if self._image is None or self.payload is None:
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        target = self.image_rect()
        p.drawImage(target, self._image)
        scale = target.width() / self._image.width()
        self._paint_faces(p, target, scale, int(min(max(13, 15 * scale), 22)))
        if self.dimmed:
            p.fillRect(target, QColor(0, 0, 0, 140))
        p.end()
        self.frames_painted += 1

    def _paint_faces(self, p: QPainter, target: QRectF, scale: float, pixel_size: int) -> None:
        assert self.payload is not None
        font = QFont(self.font())
        font.setPixelSize(pixel_size)
        font.setBold(True)
        p.setFont(font)
        for face in self.payload.result.faces:
            x, y, w, h = face.box
            box = QRectF(target.x() + x * scale, target.y() + y * scale, w * scale, h * scale)
            self._draw_face(p, box, face, target.top())

    def _draw_face(self, p: QPainter, box: QRectF, face: FaceResult, top: float) -> None:
        known = face.name is not None
        color = KNOWN_COLOR if known else UNKNOWN_COLOR
        pen = QPen(color, 3 if known else 2.5)
        if not known:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(box, 4, 4)
        text = face_label(face, self.show_candidates)
        fm = QFontMetricsF(p.font())
        tw, th = fm.horizontalAdvance(text) + 12, fm.height() + 6
        ty = box.top() - th - 2
        if ty < top:
            ty = box.top() + 2  # no room above: put the label inside the box
        label = QRectF(box.left() - 1.5, ty, tw, th)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(color))
        p.drawRoundedRect(label, 4, 4)
        p.setPen(QColor("white"))
        p.drawText(label.adjusted(6, 0, 0, 0), int(Qt.AlignmentFlag.AlignVCenter), text)
        if known:
            return
        # A question mark in the corner makes Unknown clear without relying on colour.
        p.setPen(QPen(color, 2))
        p.drawText(QPointF(box.right() - fm.horizontalAdvance("?") - 6,
                           box.bottom() - 6), "?")


def clock_text(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a position in a video."""
    s = max(0, int(seconds))
    h, m = s // 3600, s % 3600 // 60
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class SeekBar(QWidget):
    """Play/pause and a position slider under the video, for video files.

    The slider follows the frames shown, except while the user drags it; releasing it
    (or clicking along it) asks for that frame with `seek_requested`.
    """

    #: The user chose a frame number.
    seek_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("seekBar")
        self.play_button = QToolButton(self)
        self.play_button.setAutoRaise(True)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("seekSlider")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space belongs to pause/resume
        self.slider.sliderReleased.connect(lambda: self.seek_requested.emit(self.slider.value()))
        self.slider.actionTriggered.connect(self._on_slider_action_triggered)
        self.time_label = QLabel("0:00 / 0:00", self)
        self.time_label.setMinimumWidth(self.time_label.fontMetrics().horizontalAdvance(
            "00:00:00 / 00:00:00"))
        self.time_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.time_label)
        self.fps = 0.0
        self.hide()

    def _on_slider_action_triggered(self, action: int) -> None:
        a = QAbstractSlider.SliderAction
        if action in (a.SliderPageStepAdd.value, a.SliderPageStepSub.value,
                      a.SliderSingleStepAdd.value, a.SliderSingleStepSub.value):
            # A click beside the handle: the value changes after this signal, so read it
            # on the next turn of the event loop.
            QTimer.singleShot(0, lambda: self.seek_requested.emit(self.slider.value()))

    def show_position(self, position: int, frame_count: int | None, fps: float) -> None:
        """Follow the frame on screen (unless the user is dragging the slider)."""
        self.fps = fps if fps > 0 else self.fps
        if frame_count:
            self.slider.setRange(0, max(0, frame_count - 1))
            self.slider.setPageStep(max(1, round(10 * (self.fps or 25))))
        if not self.slider.isSliderDown():
            self.slider.setValue(position)
        total = clock_text(frame_count / self.fps) if frame_count and self.fps else "?"
        self.time_label.setText(f"{clock_text(position / self.fps) if self.fps else position} / {total}")

