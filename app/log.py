"""Logging set up once, by the entry point (STYLE.md section 6).

A daily-rotating file in the data directory records INFO and above with the thread id,
so the pipeline worker's lines can be told apart; the console shows warnings (or more
with ``-v``). ``FACEREC_LOG_LEVEL`` overrides the file level.

The log names people and files, so it is created owner-only (0600), as the store is.
A log that cannot be written (a full disk) is said once on stderr and then left alone:
the command goes on and does its job.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import IO

from app.files import open_private

FILE_FORMAT = "%(asctime)s %(levelname)-7s tid0x%(thread)x %(name)s: %(message)s"


class PrivateLogFile(logging.handlers.TimedRotatingFileHandler):
    """The daily log file: owner-only, and a failed write is reported once, not per line.

    logging's own `handleError` prints a traceback for every record that cannot be
    written (each line on a full disk). This one says once on stderr that the log
    stopped, and why, and drops later records; the program carries on.
    """

    def __init__(self, path: Path) -> None:
        # backslashreplace: a path or name that is not valid UTF-8 (a surrogate escape)
        # is logged readably instead of failing the write.
        super().__init__(path, when="midnight", backupCount=7, encoding="utf-8", delay=True,
                         errors="backslashreplace")
        self.failed = False

    def _open(self) -> IO:  # type: ignore[type-arg, override]
        return open_private(self.baseFilename, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: D102, N802
        if self.failed:
            return
        self.failed = True
        exc = sys.exc_info()[1]
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                  else f"{type(exc).__name__}: {exc}")
        name = self.baseFilename.encode("utf-8", "backslashreplace").decode("utf-8")
        try:
            sys.stderr.write(f"facerec: warning: cannot write the log file {name} ({reason}); "
                             "going on without it\n")
        except (OSError, ValueError):  # stderr is gone too: nothing left to tell
            pass
        try:
            if self.stream is not None:
                self.stream.close()
        except OSError:  # the unflushed lines cannot be written either
            pass
        self.stream = None  # type: ignore[assignment]


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
        fh = PrivateLogFile(path)
    except OSError:
        return None
    fh.setLevel(os.environ.get("FACEREC_LOG_LEVEL", "INFO").upper())
    fh.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(fh)
    return path
