"""Logging set up once, by the entry point (STYLE.md section 6).

A daily-rotating file in the data directory records INFO and above with the thread id,
so the pipeline worker's lines can be told apart; the console shows warnings (or more
with ``-v``). ``FACEREC_LOG_LEVEL`` overrides the file level.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

FILE_FORMAT = "%(asctime)s %(levelname)-7s tid0x%(thread)x %(name)s: %(message)s"


def setup_logging(log_dir: Path | None, verbosity: int = 0) -> Path | None:
    """Configure the root logger; return the log file path (None if not writable)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1
                     else logging.DEBUG)
    console.setFormatter(logging.Formatter("facerec: %(levelname)s: %(message)s"))
    root.addHandler(console)
    if log_dir is None or os.environ.get("PYTEST_CURRENT_TEST"):
        return None
    try:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = log_dir / "facerec.log"
        fh = logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=7,
                                                       encoding="utf-8", delay=True)
    except OSError:
        return None
    fh.setLevel(os.environ.get("FACEREC_LOG_LEVEL", "INFO").upper())
    fh.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(fh)
    return path
