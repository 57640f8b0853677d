"""Windows that fit the screen they open on, at any scale factor.

A size chosen in logical pixels (say 1280x800) is 2560x1600 device pixels at
``QT_SCALE_FACTOR=2``: on a 1600x1000 screen the window, or a dialog's Save button,
would open off-screen. Every window here asks for its preferred size through
`fit_to_screen`, which caps it to the available part of its screen and moves it back
onto that screen.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

#: The largest share of the available screen a window takes when first shown.
SCREEN_SHARE = 0.92


def screen_of(widget: QWidget) -> QScreen | None:
    """The screen a widget is (or will be) shown on: its parent's, else the primary."""
    parent = widget.parentWidget()
    for w in (widget, parent.window() if parent is not None else None):
        if w is not None and w.screen() is not None:
            return w.screen()
    return QGuiApplication.primaryScreen()


def available(widget: QWidget) -> QRect:
    """The available geometry of the widget's screen (logical pixels)."""
    screen = screen_of(widget)
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1280, 800)


def fit_to_screen(widget: QWidget, preferred: QSize | None = None) -> None:
    """Resize *widget* to *preferred* (or its current size), capped to its screen.

    The minimum size its layout needs wins over the cap only if it still fits; a
    layout that asks for more than the screen has is clamped too, so that the window
    edges, and the buttons along them, stay reachable.
    """
    area = available(widget)
    want = preferred or widget.size()
    cap = QSize(int(area.width() * SCREEN_SHARE), int(area.height() * SCREEN_SHARE))
    minimum = widget.minimumSizeHint().expandedTo(widget.minimumSize())
    w = min(max(want.width(), min(minimum.width(), area.width())), cap.width())
    h = min(max(want.height(), min(minimum.height(), area.height())), cap.height())
    if widget.minimumWidth() > area.width() or widget.minimumHeight() > area.height():
        widget.setMinimumSize(min(widget.minimumWidth(), area.width()),
                              min(widget.minimumHeight(), area.height()))
    widget.resize(w, h)
    keep_on_screen(widget)


def keep_on_screen(widget: QWidget) -> None:
    """Move a top-level widget so its frame lies inside its screen's available area."""
    area = available(widget)
    frame = widget.frameGeometry()
    size = frame.size().boundedTo(area.size())
    x = min(max(frame.x(), area.left()), area.right() - size.width() + 1)
    y = min(max(frame.y(), area.top()), area.bottom() - size.height() + 1)
    if QPoint(x, y) != frame.topLeft():
        widget.move(x, y)


def fits_screen(widget: QWidget) -> bool:
    """True if the widget's frame lies within its screen's available area."""
    return available(widget).contains(widget.frameGeometry())
