"""The desktop app: the only package that imports PySide6.

Importing it first neutralises a side effect of OpenCV: the ``opencv-contrib-python``
wheel (pulled in by mediapipe) bundles Qt 5 and, when ``cv2`` is imported, points
``QT_QPA_PLATFORM_PLUGIN_PATH`` and ``QT_QPA_FONTDIR`` at its own Qt 5 plugins. A
PySide6 (Qt 6) application created after that would try to load Qt 5 platform plugins
and abort. We import ``cv2`` here, once, so its side effect happens now, and then drop
those variables if they point into the cv2 package.
"""

from __future__ import annotations

import os as _os


def neutralise_cv2_qt_env() -> list[str]:
    """Remove the Qt environment variables that ``import cv2`` points at its bundled Qt 5.

    Returns
    -------
    list of str
        The names of the variables removed (for logging).
    """
    import cv2  # noqa: F401 - imported for its side effect on os.environ

    cv2_dir = _os.path.dirname(_os.path.abspath(cv2.__file__))
    removed = []
    for key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR", "QT_PLUGIN_PATH"):
        value = _os.environ.get(key)
        if value and _os.path.abspath(value).startswith(cv2_dir):
            del _os.environ[key]
            removed.append(key)
    return removed


neutralise_cv2_qt_env()
