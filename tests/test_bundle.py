"""The packaged executable (``make package`` -> dist/facerec/) works on its own.

Skipped when dist/facerec has not been built. Every run happens the way a user would
run it: from a temp directory outside the checkout, with a temp data directory, with
no PYTHONPATH/virtualenv in the environment and the checkout's .venv off PATH. One
test runs a *copy* of the folder, which proves no path of the build machine's checkout
is baked in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FR, REPO

DIST = REPO / "dist" / "facerec"
EXE_NAME = "facerec.exe" if sys.platform.startswith("win") else "facerec"
EXE = DIST / EXE_NAME

needs_build = pytest.mark.skipif(
    not EXE.is_file(), reason="dist/facerec not built (run `make package` first)")


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no Python set up: nothing from this checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FACEREC_", "QT_", "PYTEST"))}
    env["PATH"] = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not Path(d).resolve().is_relative_to(REPO))
    env["FACEREC_HOME"] = str(home)
    env.update(extra)
    return env


def _run(exe: Path, *args: str, cwd: Path, home: Path, timeout: float = 180,
         **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], cwd=cwd, env=_clean_env(home, **extra),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory outside the checkout."""
    d = tmp_path / "cwd"
    d.mkdir()
    assert not d.resolve().is_relative_to(REPO)
    return d


@needs_build
def test_version(outside: Path, tmp_path: Path) -> None:
    from app import __version__

    r = _run(EXE, "--version", cwd=outside, home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"facerec {__version__}"


@needs_build
def test_self_test_with_a_photo(outside: Path, tmp_path: Path) -> None:
    r = _run(EXE, "self-test", str(FR / "obama.jpg"), cwd=outside, home=tmp_path / "home")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "self-test passed" in r.stdout
    assert f"models in {DIST / '_internal' / 'models'}" in r.stdout  # the bundle's own copy


@needs_build
def test_enroll_then_identify(outside: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = _run(EXE, "enroll", "Obama", str(FR / "obama.jpg"), cwd=outside, home=home)
    assert r.returncode == 0, r.stderr
    assert "enrolled 1 face(s) for Obama" in r.stdout
    r = _run(EXE, "identify", "--json", str(FR / "obama2.jpg"), cwd=outside, home=home)
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(r.stdout)
    assert [f["name"] for f in entry["faces"]] == ["Obama"]
    r = _run(EXE, "people", "--json", cwd=outside, home=home)
    assert [p["name"] for p in json.loads(r.stdout)] == ["Obama"]
    assert (home / "faces.db").is_file()


@needs_build
def test_a_shared_gallery_in_postgresql(outside: Path, tmp_path: Path, pg_url: str) -> None:
    """The bundle carries the PostgreSQL driver (psycopg with its own libpq): one
    workstation enrolls into the shared gallery, another names the face."""
    r = _run(EXE, "--store", pg_url, "enroll", "Obama", str(FR / "obama.jpg"), cwd=outside,
             home=tmp_path / "a")
    assert r.returncode == 0, r.stderr
    r = _run(EXE, "--store", pg_url, "identify", "--json", str(FR / "obama2.jpg"), cwd=outside,
             home=tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert [f["name"] for f in json.loads(r.stdout)[0]["faces"]] == ["Obama"]


@needs_build
def test_eval_plot_uses_the_trimmed_matplotlib(outside: Path, tmp_path: Path) -> None:
    """`eval --plot` draws with the bundle's Agg-only matplotlib."""
    from tests.conftest import DEEPFACE

    rows = (DEEPFACE / "master.csv").read_text().splitlines()
    same = [r for r in rows[1:] if r.endswith(",Yes")][:3]
    diff = [r for r in rows[1:] if r.endswith(",No")][:3]
    pairs = outside / "pairs.csv"
    pairs.write_text("\n".join([rows[0], *same, *diff]) + "\n")
    plot = outside / "roc.png"
    r = _run(EXE, "eval", str(pairs), "--images", str(DEEPFACE), "--plot", str(plot),
             cwd=outside, home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_build
def test_encrypted_backup_round_trip(outside: Path, tmp_path: Path) -> None:
    """The `cryptography` native library is bundled: an encrypted backup restores."""
    if "backup" not in _run(EXE, "--help", cwd=outside, home=tmp_path / "h").stdout:
        pytest.skip("this build has no backup command")
    home, other = tmp_path / "home", tmp_path / "other"
    secret = outside / "pass.txt"
    secret.write_text("correct horse battery staple\n")
    assert _run(EXE, "enroll", "Obama", str(FR / "obama.jpg"), cwd=outside,
                home=home).returncode == 0
    r = _run(EXE, "backup", "g.bak", "--encrypt", "--passphrase-file", str(secret),
             cwd=outside, home=home)
    assert r.returncode == 0, r.stderr
    r = _run(EXE, "restore", "g.bak", "--passphrase-file", str(secret), cwd=outside, home=other)
    assert r.returncode == 0, r.stderr
    assert "Obama" in _run(EXE, "people", cwd=outside, home=other).stdout


@needs_build
def test_a_copied_folder_works(outside: Path, tmp_path: Path) -> None:
    """Copied elsewhere (the user's download), the folder still finds everything."""
    copy = tmp_path / "somewhere else" / "facerec"
    shutil.copytree(DIST, copy, symlinks=True)
    home = tmp_path / "home"
    r = _run(copy / EXE_NAME, "self-test", str(FR / "obama.jpg"), cwd=outside, home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"models in {copy / '_internal' / 'models'}" in r.stdout
    r = _run(copy / EXE_NAME, "enroll", "Biden", str(FR / "biden.jpg"), cwd=outside, home=home)
    assert r.returncode == 0, r.stderr


@needs_build
def test_bundle_holds_no_path_of_the_checkout() -> None:
    """No text file in the bundle names the checkout or its virtual environment."""
    needle = str(REPO).encode()
    offenders = [
        p.relative_to(DIST) for p in DIST.rglob("*")
        if p.is_file() and p.suffix in {".py", ".txt", ".cfg", ".conf", ".json", ".desktop"}
        and needle in p.read_bytes()
    ]
    assert not offenders


@needs_build
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="offscreen Qt: Linux only")
def test_gui_starts_and_quits(outside: Path, tmp_path: Path) -> None:
    """``facerec`` with no command opens the window; FACEREC_QUIT_AFTER closes it."""
    home = tmp_path / "home"
    r = _run(EXE, cwd=outside, home=home, timeout=120,
             QT_QPA_PLATFORM="offscreen", FACEREC_QUIT_AFTER="2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    logs = "".join(p.read_text() for p in (home / "logs").glob("*.log*"))
    assert "GUI exited (0)" in logs


def test_desktop_entry_and_icons() -> None:
    """resources/ holds a freedesktop entry and the icon in the sizes it names."""
    import configparser

    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(REPO / "resources" / "facerec.desktop", encoding="utf-8")
    d = entry["Desktop Entry"]
    assert (d["Type"], d["Name"], d["Exec"], d["Icon"]) == ("Application", "facerec",
                                                            "facerec", "facerec")
    assert "Video" in d["Categories"].split(";")
    icons = REPO / "resources" / "icons"
    assert (icons / "facerec.svg").is_file() and (icons / "facerec.ico").is_file()
    from PIL import Image

    for size in (16, 32, 48, 64, 128, 256):
        with Image.open(icons / f"facerec-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
    if shutil.which("desktop-file-validate"):
        r = subprocess.run(["desktop-file-validate", str(REPO / "resources" / "facerec.desktop")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@needs_build
def test_bundle_ships_resources_and_no_cv2_qt_plugins() -> None:
    internal = DIST / "_internal"
    assert (internal / "resources" / "icons" / "facerec.svg").is_file()
    assert sorted(p.name for p in (internal / "models").glob("*.tflite")) == [
        "face_detection_short_range.tflite", "facenet512.tflite"]
    assert (internal / "models" / "facenet512_mean.npy").is_file()  # verified by self-test
    assert not (internal / "cv2" / "qt").exists()  # Qt 5 plugins would fight PySide6's Qt 6
