"""Keep native libraries' start-up chatter off the user's terminal.

MediaPipe and LiteRT write INFO lines straight to file descriptor 2 when a model is
created or first run (accelerator registration, "XNNPACK delegate created"); Python's
logging cannot filter them. We point fd 2 at /dev/null for those calls only. Set
``FACEREC_NATIVE_LOGS=1`` to see them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence fd 2 for the duration of the block (serialised across threads)."""
    if os.environ.get("FACEREC_NATIVE_LOGS"):
        yield
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
