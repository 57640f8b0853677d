"""Entry script of the packaged ``facerec`` executable (PyInstaller runs this as __main__).

It is exactly the ``facerec`` console script: every CLI command works, and with no
command the desktop app starts. The windowed ``facerec-gui`` executable (Windows and
macOS only; see facerec.spec) runs this same file.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a no-op unless a child process is spawned
    from app.cli import main

    sys.exit(main())
