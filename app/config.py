"""Where facerec keeps its files, and the user's settings.

Every root is injectable (STYLE.md section 3): ``--data-dir`` wins, then the
``FACEREC_HOME`` environment variable, then the platform's user data directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from app import APP_NAME
from app.errors import DataDirError

log = logging.getLogger(__name__)

ENV_HOME = "FACEREC_HOME"
#: A shared gallery's URL (postgresql://...), used when --store is not given.
ENV_STORE = "FACEREC_STORE"
SETTINGS_VERSION = 2


@dataclass(frozen=True)
class Paths:
    """The files of one facerec data directory.

    Parameters
    ----------
    root : Path
        The data directory; it holds the store, the index, settings and logs.
    """

    root: Path

    @classmethod
    def resolve(cls, data_dir: str | os.PathLike[str] | None = None) -> Paths:
        """Pick the data directory: explicit argument, ``FACEREC_HOME``, platform default."""
        if data_dir:
            root = Path(data_dir)
        elif os.environ.get(ENV_HOME):
            root = Path(os.environ[ENV_HOME])
        else:
            import platformdirs

            root = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
        return cls(root.expanduser().absolute())

    @property
    def db(self) -> Path:
        """The SQLite face store, the source of truth."""
        return self.root / "faces.db"

    @property
    def index(self) -> Path:
        """The persisted HNSW index; rebuilt from the store whenever it disagrees."""
        return self.root / "faces.hnsw"

    @property
    def settings(self) -> Path:
        """User settings as JSON."""
        return self.root / "settings.json"

    @property
    def logs(self) -> Path:
        """Directory of rotating log files."""
        return self.root / "logs"

    def check(self) -> Paths:
        """Refuse a data directory that cannot be ours, before anything is read or written.

        It must be a directory (or not exist yet, to be created) owned by the user
        running facerec: it holds biometric data, so a directory someone else owns is
        never used, even where it is writable (root included: files it wrote there
        would lock their owner out).

        Raises
        ------
        DataDirError
            One line naming the path, what is wrong and what to do.
        """
        name = display_path(self.root)
        fix = "choose another with --data-dir DIR or FACEREC_HOME"
        try:
            st = self.root.stat()
        except FileNotFoundError:
            if self.root.is_symlink():
                raise DataDirError(f"data directory {name} is a symbolic link to a path that does "
                                   f"not exist: create its target, or {fix}") from None
            return self  # created by ensure()
        except OSError as exc:
            raise DataDirError(f"data directory {name}: cannot use it ({exc.strerror}); "
                               f"{fix}") from None
        if not stat.S_ISDIR(st.st_mode):
            what = ("a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "a file")
            raise DataDirError(f"data directory {name} is {what}, not a directory: {fix}")
        uid = getattr(os, "geteuid", lambda: None)()
        if uid is not None and st.st_uid != uid:
            raise DataDirError(f"data directory {name} belongs to another user (uid "
                               f"{st.st_uid}): facerec keeps its biometric data only in a "
                               f"directory of your own; {fix}")
        return self

    def ensure(self) -> Paths:
        """Create the data directory (owner-only: it holds biometric data).

        Raises
        ------
        DataDirError
            If it cannot be used (see `check`) or created.
        """
        self.check()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DataDirError(f"cannot create the data directory {display_path(self.root)} "
                               f"({exc.strerror}); choose another with --data-dir DIR or "
                               "FACEREC_HOME") from None
        try:
            # Take group and other access away, but never give the owner more: a data
            # dir its owner made read-only stays read-only (it still recognises).
            mode = self.root.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(self.root, mode & 0o700)
        except OSError:  # pragma: no cover - e.g. a file system without Unix permissions
            log.warning("could not restrict permissions of %s", self.root)
        return self


def display_path(path: str | os.PathLike[str]) -> str:
    """A path for a message, even when its bytes are not valid UTF-8."""
    return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")


#: The default strictness: about 1 stranger in 200 may be named, whatever the number of
#: people enrolled. Half the 1 % the app promises, because the share measured on new
#: strangers and new galleries varies around the calibrated one (the figures: README.md,
#: "How the rule was chosen", the default target).
DEFAULT_FALSE_ACCEPT = 0.005
#: Targets a user may set: 1 in 100,000 to 1 in 20 (the calibration's tail starts at 1 in 20).
FALSE_ACCEPT_RANGE = (1e-5, 0.05)
#: Before settings version 2 a fixed similarity threshold decided; this was its default.
LEGACY_DEFAULT_MATCH_THRESHOLD = 0.52


@dataclass
class Settings:
    """User-tunable settings; stored as JSON in the data directory.

    Attributes
    ----------
    false_accept : float
        Strictness: the share of strangers who may be given a name (0.005: about 1 in
        200), the same whatever the number of people enrolled (`app.pipeline.recognition.decision`).
    min_similarity : float
        Expert option: a raw similarity the best person must also reach (0: none). It can
        only make naming stricter.
    detection_confidence : float
        Minimum face detector score.
    search : str
        ``"auto"`` (exact for small galleries, HNSW above), ``"exact"`` or ``"hnsw"``.
    camera_width, camera_height : int
        Requested camera resolution (the camera may pick the nearest it supports).
    threads : int
        Inference threads for the embedder; 0 picks the number of cores.
    log_retention_days : int
        Days the recognition log keeps a row; 0 keeps every row.
    show_candidates : bool
        Expert: label an Unknown face with its best candidate and score.
    store : str
        A shared gallery's URL (``postgresql://...``); empty for the local SQLite store.
        ``--store`` and ``FACEREC_STORE`` take precedence.
    """

    false_accept: float = DEFAULT_FALSE_ACCEPT
    min_similarity: float = 0.0
    detection_confidence: float = 0.5
    search: str = "auto"
    camera_width: int = 1280
    camera_height: int = 720
    threads: int = 0
    log_retention_days: int = 30
    show_candidates: bool = False
    store: str = ""

    def validated(self) -> Settings:
        """Return a copy with every field clamped to its legal range."""
        s = Settings(**asdict(self))
        s.false_accept = min(max(float(s.false_accept), FALSE_ACCEPT_RANGE[0]), FALSE_ACCEPT_RANGE[1])
        s.min_similarity = min(max(float(s.min_similarity), 0.0), 1.0)
        s.detection_confidence = min(max(float(s.detection_confidence), 0.05), 0.99)
        if s.search not in ("auto", "exact", "hnsw"):
            s.search = "auto"
        s.camera_width = min(max(int(s.camera_width), 160), 7680)
        s.camera_height = min(max(int(s.camera_height), 120), 4320)
        s.threads = min(max(int(s.threads), 0), 64)
        s.log_retention_days = min(max(int(s.log_retention_days), 0), 3650)
        s.show_candidates = bool(s.show_candidates)
        s.store = str(s.store).strip()
        return s

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read settings, dropping unknown or malformed keys with a warning.

        A broken settings file never blocks start-up (as pymmcore-gui does).
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", path, exc)
            return cls()
        if not isinstance(raw, dict):
            log.warning("ignoring settings file %s: not a JSON object", path)
            return cls()
        good: dict[str, Any] = _migrate(raw)
        defaults = cls()
        for f in fields(cls):
            if f.name not in raw:
                continue
            value, default = raw[f.name], getattr(defaults, f.name)
            try:
                good[f.name] = type(default)(value)
                if isinstance(good[f.name], float) and not math.isfinite(good[f.name]):
                    raise ValueError("not finite")
            except (TypeError, ValueError, OverflowError):
                good.pop(f.name, None)
                log.warning("ignoring setting %s=%r", f.name, value)
        return cls(**good).validated()

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves a half-written file."""
        data = {"version": SETTINGS_VERSION, **asdict(self.validated())}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Settings implied by an older file's keys (applied before its current keys).

    Version 1 named a face when its similarity reached ``match_threshold``. A user who
    had changed it from the default keeps it as the minimum similarity, so nobody's
    facerec becomes less strict than they chose; the default value is dropped, since the
    calibrated rule replaces it.
    """
    version = raw.get("version", 1)
    if (isinstance(version, (int, float)) and version >= 2) or "match_threshold" not in raw:
        return {}
    try:
        old = float(raw["match_threshold"])
    except (TypeError, ValueError):
        return {}
    if not math.isfinite(old) or abs(old - LEGACY_DEFAULT_MATCH_THRESHOLD) < 1e-9:
        return {}
    log.info("settings: the match threshold %.2f you set is kept as the minimum similarity", old)
    return {"min_similarity": old}


def store_location(paths: Paths, settings: Settings | None = None,
                   explicit: str | None = None) -> str | Path:
    """Where the gallery is.

    ``--store`` (*explicit*), else ``FACEREC_STORE``, else the settings, else the SQLite
    file in the data directory.
    """
    for candidate in (explicit, os.environ.get(ENV_STORE), settings.store if settings else None):
        if candidate and str(candidate).strip():
            return str(candidate).strip()
    return paths.db
