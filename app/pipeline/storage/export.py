"""Files a user takes away: CSV exports and saved frames.

They hold who was seen, when and where, or a face: biometric and identity data. Every
one is created readable by its owner only (0600), like the store, whatever the umask.

A CSV export is opened by spreadsheets, which run a cell starting with ``=``, ``+``,
``-`` or ``@`` as a formula (tab and carriage return too, in some): a person's name or
a file name such as ``=HYPERLINK(...)`` would then run on the reader's machine ("CSV
injection"). As OWASP recommends, such a text cell is written with a leading single
quote, which the spreadsheet shows as text; a plain number such as ``-0.25`` is left as
it is, since it cannot be a formula. Programs that read the CSV see the quote.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Iterable, Sequence
from typing import IO, Any

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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


def spreadsheet_safe(value: object) -> str:
    """*value* as CSV cell text that a spreadsheet cannot run as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(path: str | os.PathLike[str], header: Sequence[str],
              rows: Iterable[Sequence[object]]) -> int:
    """Write a CSV export (0600, every cell `spreadsheet_safe`); return the rows written."""
    n = 0
    with open_private(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([spreadsheet_safe(v) for v in row])
            n += 1
    return n
