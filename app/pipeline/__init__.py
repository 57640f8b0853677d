"""The recognition pipeline: detection, alignment, embedding, search and storage.

Nothing in this package imports Qt, so the CLI, the GUI worker and the tests all run
the same code (STYLE.md section 1).
"""

import os as _os

# Native libraries print to stderr on their own; keep them quiet unless asked.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# FFmpeg (inside OpenCV) writes its own lines, such as "[http @ 0x...] Stream ends
# prematurely", straight to stderr; our message says what failed. -8 is AV_LOG_QUIET;
# OpenCV reads this when it first opens a video. FACEREC_NATIVE_LOGS=1 shows them.
if not _os.environ.get("FACEREC_NATIVE_LOGS"):
    _os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
