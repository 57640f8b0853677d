"""Keep native libraries' start-up chatter off the user's terminal.

MediaPipe and LiteRT write INFO lines straight to file descriptor 2 when a model is
created (accelerator registration, "XNNPACK delegate created"), and MediaPipe writes a
one-time warning about tensor alignment on some early detection; Python's logging
cannot filter them. Around those calls fd 2 is pointed at a temporary file; afterwards
every line that is not such chatter is written on to the real stderr, so a genuine
native error still reaches the user. Set ``FACEREC_NATIVE_LOGS=1`` to see everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_lock = threading.Lock()
#: Native log lines that are chatter: INFO lines, absl's "before InitGoogle" notice,
#: and glog-style info/warning lines ("I0000 00:00:..." / "W0000 ...").
_CHATTER = re.compile(rb"^(INFO: |WARNING: Logging before InitGoogle|[IW]\d{4} [\d:.]+ )")


@dataclass
class Captured:
    """What a `quiet_native_stderr` block swallowed."""

    chatter: bytes = b""


@contextmanager
def quiet_native_stderr() -> Iterator[Captured]:
    """Capture fd 2 for the block; drop native chatter, forward anything else.

    Serialised across threads (fd 2 belongs to the whole process).
    """
    seen = Captured()
    if os.environ.get("FACEREC_NATIVE_LOGS"):
        yield seen
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield seen
            return
        sink = tempfile.TemporaryFile()
        try:
            os.dup2(sink.fileno(), 2)
            yield seen
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().splitlines(keepends=True)
            sink.close()
            kept = [line for line in lines if not _CHATTER.match(line)]
            seen.chatter = b"".join(line for line in lines if _CHATTER.match(line))
            if kept:
                os.write(2, b"".join(kept))
