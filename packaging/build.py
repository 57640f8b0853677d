"""Build the one-folder executable into dist/facerec/ and check that it works.

``make package`` runs this with the project's virtual environment. Steps:

1. PyInstaller builds ``packaging/facerec.spec`` (from scratch: ``--clean``).
2. The built ``dist/facerec/facerec self-test`` must pass (both models verified, detection
   and embedding on a synthetic frame and on a real photo if one is available, a store in
   a temp dir), run from a temp directory with a temp data directory.
3. It prints the build time and the folder size.

Options: ``--no-trim`` builds without trimming into ``build/untrimmed/facerec`` (for the
size comparison in packaging/README.md); ``--skip-check`` skips step 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "facerec.spec"
PHOTO = ROOT.parent / "shared" / "testdata" / "face_recognition" / "obama.jpg"


def folder_size(path: Path) -> int:
    """Bytes of all regular files under *path* (symlinks not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-trim", action="store_true", help="build without trimming")
    p.add_argument("--skip-check", action="store_true", help="do not run the self-test")
    args = p.parse_args(argv)

    env = dict(os.environ)
    if args.no_trim:
        env["FACEREC_PACKAGE_NO_TRIM"] = "1"
        distpath, workpath = ROOT / "build" / "untrimmed", ROOT / "build" / "pyinstaller-untrimmed"
    else:
        env.pop("FACEREC_PACKAGE_NO_TRIM", None)
        distpath, workpath = ROOT / "dist", ROOT / "build" / "pyinstaller"
    out = distpath / "facerec"
    shutil.rmtree(out, ignore_errors=True)

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(distpath), "--workpath", str(workpath), str(SPEC)]
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    build_s = time.perf_counter() - t0
    if r.returncode != 0:
        print(f"build FAILED (exit {r.returncode})", file=sys.stderr)
        return r.returncode

    exe = out / ("facerec.exe" if sys.platform.startswith("win") else "facerec")
    if not args.skip_check:
        # Run it the way a user would: from elsewhere, with no Python environment around.
        clean_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FACEREC_", "QT_"))}
        clean_env["PATH"] = os.pathsep.join(
            d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not Path(d).resolve().is_relative_to(ROOT))
        with tempfile.TemporaryDirectory(prefix="facerec-selftest-") as tmp:
            clean_env["FACEREC_HOME"] = str(Path(tmp) / "home")
            check = [str(exe), "self-test"] + ([str(PHOTO)] if PHOTO.is_file() else [])
            print("+", " ".join(check), flush=True)
            r = subprocess.run(check, cwd=tmp, env=clean_env)
        if r.returncode != 0:
            print("the built executable FAILED its self-test", file=sys.stderr)
            return 1

    size = folder_size(out)
    print(f"\nbuilt {out.relative_to(ROOT)} in {build_s:.0f} s: "
          f"{size / 1e6:.0f} MB ({sum(1 for _ in out.rglob('*'))} files)")
    print(f"run it: {exe.relative_to(ROOT)} --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
