"""The installed Qt binding must not leak references to Python's singletons.

PySide6 6.12.0 (the cp310-abi3 wheels) returns ``None`` from every void method and
``True`` from ``SignalInstance.emit()`` without taking a reference. On Python < 3.12,
where these objects are not immortal, a camera app that makes such calls every frame
aborts within minutes ("Fatal Python error: none_dealloc"). pyproject.toml excludes
that release; this test fails if a leaking binding is installed anyway.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    fired = Signal()


def test_void_calls_and_emits_keep_none_and_true_alive() -> None:
    probe = _Probe()
    n = 1000
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(n):
        probe.setObjectName("probe")  # a void method
        probe.fired.emit()
    assert none0 - sys.getrefcount(None) < n // 2
    assert true0 - sys.getrefcount(True) < n // 2
