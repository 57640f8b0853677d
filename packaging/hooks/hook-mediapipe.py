"""PyInstaller hook for mediapipe >= 0.10.30 (the ctypes-based Tasks API).

MediaPipe Tasks load ``mediapipe/tasks/c/libmediapipe.so`` (``.dylib``/``.dll``) with
``ctypes.CDLL`` at a path computed by ``importlib.resources.files("mediapipe.tasks.c")``,
so PyInstaller's import analysis never sees it. Collect it at the same relative path
and make ``mediapipe.tasks.c`` an importable package so ``resources.files`` resolves
inside the bundle.
"""

from PyInstaller.utils.hooks import collect_dynamic_libs

binaries = [
    (src, dest)
    for src, dest in collect_dynamic_libs("mediapipe")
    if dest.replace("\\", "/").startswith("mediapipe/tasks/c")
]

# The rest of the Python side is found by import analysis. (What the app does not use,
# such as the audio tasks' optional sounddevice, is trimmed in facerec.spec.)
hiddenimports = ["mediapipe.tasks.c"]
