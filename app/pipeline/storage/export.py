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
from collections.abc import Iterable, Sequence

from app.files import open_private

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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
