"""Shared fixtures: the shared test photos, a temp data directory and a face video.

The real models and real photos are used throughout; nothing is mocked in
``tests/pipeline``. The photos live in ``../shared/testdata`` beside the checkout and
are never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("FACEREC_TESTDATA", REPO.parent / "shared" / "testdata"))
DEEPFACE = TESTDATA / "deepface"
FR = TESTDATA / "face_recognition"

if not (DEEPFACE / "master.csv").is_file():  # pragma: no cover - a broken checkout layout
    raise pytest.UsageError(
        f"test photos not found at {TESTDATA}: put the shared folder beside the checkout "
        "or set FACEREC_TESTDATA")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real user data directory, whatever a test forgets."""
    monkeypatch.setenv("FACEREC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEREC_STORE", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty facerec data directory."""
    return tmp_path / "data"


@pytest.fixture(scope="session")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 MJPG clip: Obama (obama3.jpg), then Biden, then a stranger (img3.jpg).

    Each photo is shown for 24 frames at 12 fps, drifting a few pixels per frame so
    consecutive frames differ as a real camera's do. None of these photos is used for
    enrollment in the tests, so the video shows faces "never seen" by the gallery.
    """
    from tests.video import write_slideshow

    path = tmp_path_factory.mktemp("video") / "people.avi"
    write_slideshow(path, [FR / "obama3.jpg", FR / "biden.jpg", DEEPFACE / "img3.jpg"],
                    frames_each=24, size=(640, 480), fps=12.0)
    return path


def _started_server(*databases: str):  # noqa: ANN202
    """A started test server (tests/pgserver.py) whose new databases all have pgvector."""
    from tests import pgserver

    why = pgserver.available()
    if why:
        pytest.fail(f"cannot start the test PostgreSQL server: {why}")
    server = pgserver.PgServer()
    server.start()
    # Every database made for a test starts with pgvector (its creation needs a superuser).
    server.execute("CREATE EXTENSION vector", dbname="template1")
    for name in databases:
        server.execute(f"CREATE DATABASE {name}")
    return server


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 + pgvector server for the session (see tests/pgserver.py)."""
    server = _started_server()
    yield server
    server.destroy()


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the test server, as its superuser's URL."""
    name = f"facerec_t{next(_databases)}"
    pg_server.execute(f"CREATE DATABASE {name}")
    return pg_server.url(name)


@pytest.fixture
def private_server():
    """A server of the test's own, which it may stop and start; database "gallery" in it."""
    server = _started_server("gallery")
    yield server
    server.destroy()
