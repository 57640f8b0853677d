"""The pipeline and the CLI run without Qt (STYLE.md section 1)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import FR

HEADLESS = """
import sys
sys.modules["PySide6"] = None  # any import of Qt now fails loudly
import app.cli, app.config
import app.pipeline.recognition.recognizer, app.pipeline.recognition.sources, app.pipeline.tools.evaluate
code = app.cli.main(["enroll", "Obama", sys.argv[1]])
code |= app.cli.main(["people"])
assert not any(m.startswith("PySide6.") for m in sys.modules)
sys.exit(code)
"""


def test_cli_and_pipeline_work_without_qt(tmp_path) -> None:
    env = {**os.environ, "FACEREC_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", HEADLESS, str(FR / "obama.jpg")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Obama" in proc.stdout
