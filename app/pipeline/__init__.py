"""The recognition pipeline: detection, alignment, embedding, search and storage.

Nothing in this package imports Qt, so the CLI, the GUI worker and the tests all run
the same code (STYLE.md section 1).
"""

import os as _os

# Native libraries print to stderr on their own; keep them quiet unless asked.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
