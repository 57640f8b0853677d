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


def test_results_come_in_order_while_jobs_run(qtbot, paths, face_video):  # noqa: ANN001
    # Frames go through the two-stage pipeline; a job mid-stream drains it first.
    worker = PipelineWorker(paths)
    payloads, done = [], []

    def shown(payload) -> None:  # noqa: ANN001
        payloads.append(payload)
        worker.frame_shown()

    worker.result_ready.connect(shown)
    worker.start()
    try:
        with qtbot.waitSignal(worker.source_opened, timeout=30000):
            worker.open_source(str(face_video))
        qtbot.waitUntil(lambda: len(payloads) >= 5, timeout=30000)
        worker.call(lambda rec, reply: [p.name for p in rec.people()], on_done=done.append)
        worker.call(lambda rec, reply: rec.prepare_image(payloads[-1].frame).face, on_done=done.append)
        qtbot.waitUntil(lambda: len(done) == 2 and len(payloads) >= 20, timeout=60000)
    finally:
        assert worker.stop()
    positions = [p.position for p in payloads]
    assert positions == sorted(set(positions))  # in order, each frame once
    indices = [p.result.frame_index for p in payloads]
    assert indices == sorted(set(indices))
    assert all(len(p.result.faces) == 1 for p in payloads)


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

