"""Files that hold people's data, created readable by their owner only.

The bottom of the application (with `app.errors`): the log (`app.log`) and the
exports (`app.pipeline.storage.export`) both create their files through it.
"""

from __future__ import annotations

import os
import stat
from typing import IO, Any


def open_private(path: str | os.PathLike[str], mode: str = "w", *,
                 encoding: str | None = "utf-8", errors: str | None = None,
                 newline: str | None = None) -> IO[Any]:
    """Open *path* for writing, creating it readable by its owner only (0600).

    An existing regular file of ours is restricted too (one made before this rule was
    0644); someone else's file, or a device such as /dev/null, is written as it is.

    Parameters
    ----------
    mode : str
        ``"w"``, ``"a"``, ``"wb"`` or ``"ab"``.
    """
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and hasattr(os, "fchmod") and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding, errors=errors, newline=newline)
    except BaseException:
        os.close(fd)
        raise
