"""PyInstaller runtime hook: runs inside the frozen facerec before any app code.

Bundle-only fixes; none of this applies to a source checkout.

* Qt: the bundle ships PySide6's Qt 6 plugins only (cv2's Qt 5 plugins are left out,
  see facerec.spec). Variables inherited from the user's shell that point Qt elsewhere
  (a system Qt 5, a conda env, an OpenCV wheel in some venv) would make the Qt 6
  platform-plugin loader pick up foreign plugins and abort, so they are dropped unless
  they point inside the bundle.
* Models: ``FACEREC_MODELS_DIR`` is a developer override; a frozen build always reads
  its own verified copy, so a stale variable from a development shell cannot redirect it
  (set ``FACEREC_ALLOW_MODELS_DIR=1`` to keep the override, e.g. to test a new model).
"""

import os
import sys

_bundle = os.path.realpath(getattr(sys, "_MEIPASS", os.path.dirname(sys.executable)))


def _inside_bundle(value: str) -> bool:
    return all(
        os.path.realpath(p).startswith(_bundle + os.sep) for p in value.split(os.pathsep) if p
    )


for _key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_PLUGIN_PATH", "QT_QPA_FONTDIR"):
    _value = os.environ.get(_key)
    if _value and not _inside_bundle(_value):
        del os.environ[_key]

if not os.environ.get("FACEREC_ALLOW_MODELS_DIR"):
    os.environ.pop("FACEREC_MODELS_DIR", None)
