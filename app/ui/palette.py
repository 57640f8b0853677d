"""The window's colours, in one place, so the dialogs, the video overlay and the log agree.

Text colours are for the platform's light dialog background; the video view's are for
its dark background. Hex strings, usable both in style sheets and as ``QColor(...)``.
"""

from __future__ import annotations

#: Something failed or was refused.
ERROR = "#dc2626"
#: Attention, but nothing failed (a flagged face, faces to enroll again).
WARNING = "#b45309"
#: A check passed.
OK = "#16a34a"
#: Secondary text: hints, counts, notes.
HINT = "#6b7280"
#: The shared gallery is offline (bold in the status bar).
ALERT = "#b91c1c"

#: A named face's box and label on the video, and in the log.
KNOWN = "#22c55e"
#: An Unknown face's box and label on the video, and in the log.
UNKNOWN = "#ef4444"
#: Around the picture in the video view.
VIDEO_BACKGROUND = "#17181c"
#: The message panel over the video: its background, border and text.
PANEL_BACKGROUND = "rgba(32, 34, 40, 235)"
PANEL_BORDER = "#3b3f4a"
PANEL_TEXT = "#e8e8ea"

#: A flagged face in the enroll dialog: the thumbnail's frame and warning sign...
FLAG = "#f59e0b"
#: ...the sign once the face is kept on purpose, and the sign's outline...
FLAG_KEPT = "#9ca3af"
FLAG_OUTLINE = "#1f2937"
#: ...and the box that explains the flag.
FLAG_BOX_BACKGROUND = "#fffbeb"
FLAG_BOX_TEXT = "#78350f"


def text_style(color: str, extra: str = "") -> str:
    """A style sheet that colours a label's text (*extra*: more declarations)."""
    return f"color: {color};" + (f" {extra}" if extra else "")


ERROR_STYLE = text_style(ERROR)
WARNING_STYLE = text_style(WARNING)
OK_STYLE = text_style(OK)
HINT_STYLE = text_style(HINT)
