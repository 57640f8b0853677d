"""The pipeline worker on its own: frames are dropped while the GUI is busy, jobs run in
the worker thread, and stopping releases everything."""

from __future__ import annotations

import threading

from app.ui.worker import PipelineWorker


def test_frames_are_dropped_while_gui_is_busy(qtbot, paths, face_video):  # noqa: ANN001
    worker = PipelineWorker(paths)
    worker.ack_timeout = 60.0  # this test plays a GUI that never finishes painting
    results = []
    worker.result_ready.connect(results.append)
    worker.start()
    try:
        with qtbot.waitSignal(worker.source_opened, timeout=30000):
            worker.open_source(str(face_video))
        qtbot.waitUntil(lambda: len(results) == 1, timeout=30000)
        # Without frame_shown() the worker keeps reading (real time) but emits nothing.
        qtbot.waitUntil(lambda: worker.frames_dropped >= 4, timeout=30000)
        assert len(results) == 1
        worker.frame_shown()
        qtbot.waitUntil(lambda: len(results) == 2, timeout=30000)
        assert results[1].position > results[0].position + 4  # the newest, not the next
    finally:
        assert worker.stop()
    assert not worker.isRunning()


def test_jobs_run_in_the_worker_thread(qtbot, paths):  # noqa: ANN001
    worker = PipelineWorker(paths)
    worker.start()
    threads, errors = [], []
    try:
        worker.call(lambda rec, reply: threading.get_ident(), on_done=threads.append)
        worker.call(lambda rec, reply: rec.rename("nobody", "x"), on_error=errors.append)
        qtbot.waitUntil(lambda: bool(threads and errors), timeout=30000)
    finally:
        assert worker.stop()
    assert threads[0] != threading.get_ident()
    assert "nobody" in errors[0]

