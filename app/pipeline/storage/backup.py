"""Move a whole gallery between machines as one file, optionally encrypted.

Format: a magic line, one JSON header line, then the payload (a consistent copy of the
SQLite store made with SQLite's online backup API).

* Plain backups record the payload's SHA-256 in the header; a changed byte is refused.
* Encrypted backups derive a 256-bit key from the passphrase with scrypt (n=2^15, r=8,
  p=1; random 16-byte salt) and seal the payload with AES-256-GCM (random 12-byte
  nonce), the header bound in as associated data. A wrong passphrase and a tampered
  file are refused alike (GCM authentication fails); nothing is restored. The payload is
  streamed (AES-GCM in pieces; the same bytes as one-shot AES-GCM), so memory stays flat.

Only the store is backed up: the index is derived data and is rebuilt on restore.

A backup file is untrusted input: anyone can write one, and a plain backup's checksum
proves nothing about who made it. Before anything is restored the file must be a
regular file whose length is what its header says (at most `MAX_PAYLOAD`), ask for no
more key-derivation work than `SCRYPT_LIMITS` allow, and hold exactly the schema
facerec creates (no trigger, view or extra column: SQL in a store runs on our writes),
pass SQLite's integrity check, and hold only names the store itself accepts and sound
embeddings. Every read is in chunks of `CHUNK`.

Plaintext copies made on the way (the snapshot a backup is made from, the payload a
restore checks) live only in the data directory, owner-only, next to the store they
copy, named with the writing process's id; `remove_stale_temps` deletes those a killed
process left behind, whenever a store is opened.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from app.pipeline.errors import FacerecError, PersonError, StoreError
from app.pipeline.storage.store import (
    BUSY_TIMEOUT_MS,
    SCHEMA_VERSION,
    FaceStore,
    Store,
    merge_into,
    migrate,
    read_only_uri,
    sound_rows,
    stored_embedding,
    writable,
)
from app.pipeline.storage.vectorfile import fsync_dir, pid_alive
from app.pipeline.types import name_key, normalize_name

log = logging.getLogger(__name__)

MAGIC = b"FACEREC-BACKUP 1\n"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
#: The scrypt costs a backup may ask for: (lowest n, highest n, highest r, highest p). A
#: crafted header could otherwise ask for gigabytes (n=2^24) or minutes of work (p=10^5);
#: this allows up to 4 times our own memory (128 MiB) and 8 times our own work.
SCRYPT_LIMITS = (2**14, 2**17, 8, 2)
#: The longest header line read (ours are about 300 bytes).
MAX_HEADER = 4096
#: The largest payload restored (a 1-million-face store is about 7 GB).
MAX_PAYLOAD = 64 * 2**30
#: Reads and writes go in pieces of this size: memory stays flat whatever the file.
CHUNK = 2**20
_TAG = 16  # bytes of the AES-GCM authentication tag after the ciphertext
#: Plaintext temporaries in a data directory: ours (.restore-PID-HEX.db) and those of
#: older versions (.restore-XXXXXXXX.db from mkstemp), with their SQLite side files.
_TEMP = re.compile(r"^\.(?:restore|backup)-(?:(\d+)-[0-9a-f]+|[a-z0-9_]+)\.db(?:-journal|-wal|-shm)?$")


class BackupError(FacerecError):
    """A backup cannot be written, or a file cannot be restored."""


# -- temporary files ---------------------------------------------------------------------

def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the plaintext copies a killed backup or restore left in a data directory.

    A copy whose writer is still running (its process id is in the name) is kept.
    Returns the files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        pid = m.group(1)
        if pid is not None and (int(pid) == os.getpid() or pid_alive(int(pid))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the stale copy %s: %s", entry.path, exc.strerror or exc)
    if removed:
        log.info("removed %d copies left by a killed backup or restore in %s", len(removed), folder)
    return removed


def _open_new(path: Path) -> int:
    """Create *path* for writing: owner-only, never an existing file, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    return os.open(path, flags, 0o600)


def _new_temp(folder: Path, kind: str) -> tuple[Path, int]:
    """A new owner-only file in *folder* named for `remove_stale_temps`, and its descriptor."""
    path = folder / f".{kind}-{os.getpid()}-{secrets.token_hex(6)}.db"
    try:
        return path, _open_new(path)
    except OSError as exc:
        raise BackupError(f"cannot write in {folder}: {_why(exc)}") from None


def _remove_db(path: Path) -> None:
    """Delete a SQLite file and its side files."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            Path(str(path) + suffix).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s%s: %s", path, suffix, exc.strerror or exc)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc)


def _write_file(out: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write *out* through a new owner-only temporary beside it, then rename it into place.

    The temporary is made with O_EXCL and O_NOFOLLOW under a unique name, so a file or a
    link planted beside *out* is neither followed nor reused: the result is always a new
    0600 file (a link at *out* itself is replaced, its target untouched).
    """
    folder = out.parent
    prefix = f".{out.name}."
    try:
        for entry in os.scandir(folder):  # left by a killed backup to the same file
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and pid.isdigit() \
                    and not pid_alive(int(pid)) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    except OSError:
        pass
    tmp = folder / f"{prefix}{os.getpid()}-{secrets.token_hex(6)}.tmp"
    try:
        fd = _open_new(tmp)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {_why(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
        fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"cannot write {out}: {_why(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chunks(f: BinaryIO, size: int, path: Path) -> Iterator[bytes]:
    """Exactly *size* bytes of *f*, a piece at a time."""
    left = size
    while left:
        piece = f.read(min(CHUNK, left))
        if not piece:
            raise BackupError(f"{path}: the file is shorter than its header says (truncated?)")
        left -= len(piece)
        yield piece


# -- writing a backup --------------------------------------------------------------------

def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _snapshot(db: Path, folder: Path) -> Path:
    """A consistent copy of a live SQLite database in *folder* (safe while others write).

    The caller removes it (`_remove_db`).
    """
    if not db.exists():
        raise BackupError(f"no face store at {db}: nothing to back up")
    copy, fd = _new_temp(folder, "backup")
    os.close(fd)
    try:
        src = sqlite3.connect(read_only_uri(db), uri=True)
        try:
            dst = sqlite3.connect(copy)
            try:
                with dst:
                    src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        _remove_db(copy)
        raise BackupError(f"cannot read the face store {db}: {exc}") from None
    except BaseException:
        _remove_db(copy)
        raise
    return copy


def _snapshot_in_memory(db: Path) -> io.BytesIO:
    """A consistent copy of the store at *db*, never written to disk.

    For a data directory this process may not write (it still recognises and backs up):
    the snapshot cannot be made there, and must not be made anywhere less private.
    """
    if not db.exists():
        raise BackupError(f"no face store at {db}: nothing to back up")
    try:
        src = sqlite3.connect(read_only_uri(db), uri=True)
        try:
            dst = sqlite3.connect(":memory:")
            try:
                with dst:
                    src.backup(dst)
                # A plain rollback-journal database, as `_snapshot` leaves its copy.
                dst.execute("PRAGMA journal_mode = DELETE")
                return io.BytesIO(dst.serialize())
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the face store {db}: {exc}") from None


def _snapshot_of(store: Store, folder: Path) -> Path:
    """A shared gallery as a SQLite payload in *folder*: one backup format for both engines."""
    dump = store.dump()
    copy = folder / f".backup-{os.getpid()}-{secrets.token_hex(6)}.db"
    try:
        with FaceStore(copy) as local:
            if dump.people:
                merge_into(local, dump)
        con = sqlite3.connect(copy)
        try:
            con.execute("PRAGMA journal_mode = DELETE")  # the WAL into the file, then gone
        finally:
            con.close()
    except BaseException:
        _remove_db(copy)
        raise
    return copy


def write_backup(db: Path | Store, out: Path, passphrase: str | None = None, *,
                 scratch: Path | None = None) -> dict[str, object]:
    """Write the store at *db* (a SQLite file, or an open shared store) to *out*; return the header.

    Parameters
    ----------
    scratch : Path, optional
        The data directory, where the plaintext snapshot is made (the store's own folder
        by default; required for a shared store).
    """
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise BackupError("the backup needs a file name")
    if out.is_dir():
        raise BackupError(f"{out} is a folder: give the backup a file name")
    folder = scratch if scratch is not None else db.parent if isinstance(db, Path) else None
    if folder is None:
        raise ValueError("a shared store's backup needs a scratch folder")
    if isinstance(db, Path) and out.exists() and db.exists() and out.samefile(db):
        raise BackupError(f"{out} is the face store itself: write the backup elsewhere")
    snap: Path | None = None
    source: BinaryIO
    if isinstance(db, Path) and not writable(db):
        source = _snapshot_in_memory(db)
    else:
        remove_stale_temps(folder)
        snap = _snapshot(db, folder) if isinstance(db, Path) else _snapshot_of(db, folder)
        source = open(snap, "rb")  # noqa: SIM115 - closed by the with below
    named = snap if snap is not None else Path(db if isinstance(db, Path) else folder)
    try:
        with source as src:
            size = src.seek(0, os.SEEK_END)
            src.seek(0)
            header: dict[str, object] = {"format": 1, "size": size}
            if passphrase:
                from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

                salt, nonce = os.urandom(16), os.urandom(12)
                header.update(encrypted=True, kdf="scrypt", n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                              salt=salt.hex(), cipher="AES-256-GCM", nonce=nonce.hex())
                head = json.dumps(header, sort_keys=True).encode() + b"\n"
                key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)

                def write(f: BinaryIO) -> None:
                    # Streamed AES-GCM: the same bytes as AESGCM.encrypt (ciphertext, tag).
                    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
                    enc.authenticate_additional_data(MAGIC + head)
                    f.write(MAGIC + head)
                    for piece in _chunks(src, size, named):
                        f.write(enc.update(piece))
                    f.write(enc.finalize() + enc.tag)
            else:
                digest = hashlib.sha256()
                for piece in _chunks(src, size, named):
                    digest.update(piece)
                header.update(encrypted=False, sha256=digest.hexdigest())
                head = json.dumps(header, sort_keys=True).encode() + b"\n"

                def write(f: BinaryIO) -> None:
                    f.write(MAGIC + head)
                    src.seek(0)
                    for piece in _chunks(src, size, named):
                        f.write(piece)
            _write_file(out, write)
    finally:
        if snap is not None:
            _remove_db(snap)
    return header


# -- reading a backup --------------------------------------------------------------------

def _open_backup(path: Path) -> tuple[BinaryIO, dict[str, Any], bytes]:
    """Open a backup and read its header: the file (at the payload), header, header line.

    Raises
    ------
    BackupError
        Not a regular file, not a backup, or a header that does not fit the file.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BackupError(f"{path}: not a regular file (a backup is a file written by "
                              "facerec backup)")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        first = f.read(len(MAGIC) + MAX_HEADER)
        if not first.startswith(MAGIC):
            raise BackupError(f"{path}: not a facerec backup")
        end = first.find(b"\n", len(MAGIC))
        head = first[len(MAGIC):end + 1]
        try:
            if end < 0:
                raise ValueError("no header line")
            header = json.loads(head)
            if not isinstance(header, dict) or header.get("format") != 1:
                raise ValueError("unknown format")
        except (ValueError, UnicodeDecodeError):
            raise BackupError(f"{path}: damaged backup header") from None
        size = header.get("size")
        if type(size) is not int or not 0 < size <= MAX_PAYLOAD:
            raise BackupError(f"{path}: damaged backup header (size {size!r})")
        body = st.st_size - (end + 1)
        if body != size + (_TAG if header.get("encrypted") else 0):
            raise BackupError(f"{path}: the backup is damaged: it holds {body} bytes after its "
                              f"header, which says {size} (truncated or altered?)")
        f.seek(end + 1)
    except BaseException:
        f.close()
        raise
    return f, header, head


def backup_header(path: Path) -> dict[str, Any]:
    """The header of the backup at *path*, checked against the file as a restore checks it."""
    f, header, _ = _open_backup(path)
    f.close()
    return header


def _kdf(header: dict[str, Any], path: Path) -> tuple[bytes, int, int, int, bytes]:
    """The salt, scrypt n, r, p and the nonce of an encrypted backup, within our limits."""
    try:
        n, r, p = (header[k] for k in ("n", "r", "p"))
        salt, nonce = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce"])
    except (KeyError, ValueError, TypeError):
        raise BackupError(f"{path}: damaged backup header") from None
    lo_n, hi_n, hi_r, hi_p = SCRYPT_LIMITS
    if header.get("kdf") != "scrypt" or header.get("cipher") != "AES-256-GCM" \
            or any(type(v) is not int for v in (n, r, p)) or n & (n - 1) \
            or not (lo_n <= n <= hi_n and 1 <= r <= hi_r and 1 <= p <= hi_p) \
            or len(salt) != 16 or len(nonce) != 12:
        raise BackupError(
            f"{path}: the backup asks for key-derivation settings facerec does not accept "
            f"({header.get('kdf')} n={n} r={r} p={p}); it was not written by facerec")
    return salt, n, r, p, nonce


def _unpack(f: BinaryIO, header: dict[str, Any], head: bytes, path: Path, out: BinaryIO,
            passphrase: str | None) -> None:
    """Verify the payload of an opened backup while copying it to *out*.

    *out* holds unverified bytes until this returns: the caller deletes it on an error.
    """
    size = int(header["size"])
    if header.get("encrypted"):
        if not passphrase:
            raise BackupError(f"{path}: the backup is encrypted; a passphrase is needed")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        salt, n, r, p, nonce = _kdf(header, path)
        start = f.tell()
        f.seek(start + size)
        tag = f.read(_TAG)
        f.seek(start)
        dec = Cipher(algorithms.AES(_derive(passphrase, salt, n, r, p)),
                     modes.GCM(nonce, tag)).decryptor()
        dec.authenticate_additional_data(MAGIC + head)
        for piece in _chunks(f, size, path):
            out.write(dec.update(piece))
        try:
            out.write(dec.finalize())
        except InvalidTag:
            raise BackupError(f"{path}: wrong passphrase, or the file was altered") from None
    else:
        digest = hashlib.sha256()
        for piece in _chunks(f, size, path):
            digest.update(piece)
            out.write(piece)
        if digest.hexdigest() != header.get("sha256"):
            raise BackupError(f"{path}: the backup is damaged or was altered (checksum mismatch)")


# -- checking what a backup holds ----------------------------------------------------------

def _normal_sql(sql: str | None) -> str | None:
    """SQL without comments and with single spaces: the same schema written differently is equal."""
    if sql is None:
        return None
    text = re.sub(r"--[^\n]*", " ", sql)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ?([(),]) ?", r"\1", text).strip()


def _schema(con: sqlite3.Connection) -> set[tuple[str, str, str, str | None]]:
    return {(t, n, tbl, _normal_sql(sql)) for t, n, tbl, sql in con.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master")}


@cache
def _reference_schema(version: int) -> frozenset[tuple[str, str, str, str | None]]:
    """The schema the store's own migrations create, up to *version*."""
    con = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in range(1, version + 1):
            migrate(con, step)
        return frozenset(_schema(con))
    finally:
        con.close()


def _describe(found: set[tuple[str, str, str, str | None]],
              expected: frozenset[tuple[str, str, str, str | None]]) -> str:
    names = {(t, n) for t, n, _, _ in expected}
    for kind, name, _, _ in sorted(found - expected):
        if (kind, name) in names:
            return f"its {kind} {name!r} differs from facerec's"
        return f"it holds a {kind} {name!r} that facerec never creates"
    kind, name, _, _ = sorted(expected - found)[0]
    return f"its {kind} {name!r} is missing"


#: Column types a row may hold (SQLite stores any type in any column); None is NULL.
_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "people": {"name": ("text",), "key": ("text",), "created": ("real", "integer"),
               "changed": ("integer",)},
    "faces": {"person_id": ("integer",), "embedding": ("blob",), "thumbnail": ("blob", "null"),
              "source": ("text",), "created": ("real", "integer"), "changed": ("integer",),
              "embedder": ("text",)},
    "meta": {"key": ("text",), "value": ("text",)},
    "removed": {"kind": ("text",), "id": ("integer",), "generation": ("integer",)},
    "sightings": {"id": ("text",), "person_id": ("integer", "null"),
                  "started": ("real", "integer"), "last_seen": ("real", "integer"),
                  "frames": ("integer",), "similarity": ("real", "integer"), "source": ("text",),
                  "track": ("integer", "null"), "station": ("text",)},
}


#: Change stamps, never past the store's generation; text printed by commands as it is.
_STAMPS = (("people", "changed"), ("faces", "changed"), ("removed", "generation"))
_PRINTED = (("faces", "source"), ("faces", "embedder"), ("sightings", "source"),
            ("sightings", "station"))
#: What a terminal acts on (C0 and C1 controls, DEL): escape sequences, carriage returns.
_TERMINAL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_schema(con: sqlite3.Connection) -> str | None:
    """Why the SQLite file on *con* is not a facerec store as facerec makes them, or None."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        return (f"it was written by a newer facerec (schema {version} > {SCHEMA_VERSION}); "
                "upgrade facerec")
    if version < 1:
        return "it is not a facerec store"
    found, expected = _schema(con), _reference_schema(version)
    if found != expected:
        return _describe(found, expected)
    check = con.execute("PRAGMA integrity_check(1)").fetchone()[0]
    if check != "ok":
        return f"SQLite's integrity check fails ({check})"
    if con.execute("PRAGMA foreign_key_check").fetchone() is not None:
        return "it holds faces or log rows of people it does not hold"
    return None


def _check_rows(con: sqlite3.Connection) -> str | None:
    """Why the rows of a store with facerec's schema cannot be trusted, or None."""
    def has(table: str, column: str) -> bool:  # an older schema lacks some (checked first)
        return any(row[1] == column for row in con.execute(f"PRAGMA table_info({table})"))

    for table, columns in _TYPES.items():
        for column, kinds in columns.items():
            if not has(table, column):
                continue
            allowed = ", ".join(f"'{k}'" for k in kinds)
            row = con.execute(f"SELECT rowid FROM {table} WHERE typeof({column}) NOT IN "
                              f"({allowed}) LIMIT 1").fetchone()
            if row is not None:
                return f"row {row[0]} of {table} holds a {column} of the wrong type"
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    for key in ("generation", "history_from"):
        if key in meta and not re.fullmatch(r"\d{1,18}", meta[key]):
            return f"its {key} is not a number"
    if "generation" not in meta:
        return "its generation is missing"
    if any(k.startswith("mirror_") for k in meta):
        return "it is a workstation's copy of a shared gallery, not a store"
    gen = int(meta["generation"])
    for table, column in filter(lambda tc: has(*tc), _STAMPS):
        if con.execute(f"SELECT 1 FROM {table} WHERE {column} > ? LIMIT 1", (gen,)).fetchone():
            # A change stamped after the store's own generation would reach caches forever.
            return f"its {table} hold changes from after its own generation"
    for table, column in filter(lambda tc: has(*tc), _PRINTED):
        for (text,) in con.execute(f"SELECT DISTINCT {column} FROM {table}"):
            if _TERMINAL.search(text):
                return f"a {column} in {table} holds control characters"
    for pid, name, key in con.execute("SELECT id, name, key FROM people"):
        try:  # the store's own rule: what it would refuse to enroll, it does not restore
            ok = normalize_name(name) == name and name_key(name) == key
        except PersonError as exc:
            return f"person {pid} has a name facerec does not accept ({exc})"
        if not ok:
            return f"person {pid} has a name that is not in facerec's normal form"
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    cur = con.execute("SELECT id, embedding FROM faces ORDER BY id")
    while rows := cur.fetchmany(4096):
        vecs = []
        for fid, blob in rows:  # the store's own reading: size and checksum
            try:
                vecs.append(stored_embedding(bytes(blob), version))
            except (ValueError, TypeError) as exc:
                return f"face {fid} has a damaged embedding ({exc})"
        sound = sound_rows(np.stack(vecs))
        if not sound.all():
            return f"face {rows[int(np.argmin(sound))][0]} has an embedding that is not a unit vector"
    return None


def _unpack_checked(path: Path, folder: Path, passphrase: str | None) -> tuple[Path, int, int]:
    """Verify a backup into a new temporary store in *folder*, and prove it a sound facerec store.

    Returns the temporary (upgraded to the current schema; the caller removes it with
    `_remove_db`), its number of people and its generation.
    """
    f, header, head = _open_backup(path)
    with f:
        size = int(header["size"])
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        # The verified copy, then the store's write-ahead log while the copy goes in.
        if free is not None and free < 2 * size + CHUNK:
            raise BackupError(f"not enough free space in {folder} to restore: about "
                              f"{(2 * size) >> 20} MB are needed, {free >> 20} MB are free")
        tmp, fd = _new_temp(folder, "restore")
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    _unpack(f, header, head, path, out, passphrase)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                raise BackupError(f"cannot write in {folder}: {_why(exc)}") from None
            people, gen = _prove(tmp, path)
        except BaseException:
            _remove_db(tmp)
            raise
    return tmp, people, gen


def _prove(tmp: Path, path: Path) -> tuple[int, int]:
    """Check a verified payload before anything runs SQL on it; upgrade it; check its rows."""
    try:
        # Read-only and immutable: nothing is written (no WAL, no side file) while the
        # schema is unproven; a trigger could fire on any write.
        con = sqlite3.connect(tmp.absolute().as_uri() + "?mode=ro&immutable=1", uri=True)
        try:
            why = _check_schema(con) or _check_rows(con)
        finally:
            con.close()
        if why is None:
            with FaceStore(tmp) as incoming:  # upgrades an older schema
                people = len(incoming.people())
                gen = incoming.generation
                incoming.gallery()  # the store's own checks of every embedding
    except StoreError as exc:
        why = str(exc)
    except (sqlite3.DatabaseError, ValueError) as exc:
        why = f"{exc}"
    if why is not None:
        raise BackupError(f"{path}: not a usable facerec store: {why}; nothing was restored")
    return people, gen


# -- restoring ---------------------------------------------------------------------------

def _in_use(db: Path) -> bool:
    """Whether another process holds the store's write lock (rather than the file being damaged)."""
    try:
        con = sqlite3.connect(db, timeout=0)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.DatabaseError:
        return False
    return False


def _set_aside(db: Path) -> Path:
    """Rename a damaged store (and its side files) out of the way; return its new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = db.with_name(f"{db.stem}.damaged-{stamp}{db.suffix}")
    k = 1
    while aside.exists():
        aside = db.with_name(f"{db.stem}.damaged-{stamp}-{k}{db.suffix}")
        k += 1
    try:
        for suffix in ("-wal", "-shm", ""):  # the main file last: a store stays whole till then
            side = Path(str(db) + suffix)
            if side.exists():
                os.replace(side, Path(str(aside) + suffix))
    except OSError as exc:
        raise BackupError(f"cannot move the damaged store {db} aside: {_why(exc)}") from None
    return aside


def restore_backup(path: Path, db: Path, index: Path, passphrase: str | None = None,
                   replace: bool = False, notify: Callable[[str], None] | None = None) -> int:
    """Replace the store at *db* with the gallery in a backup; return its number of people.

    The backup is verified and proven a sound facerec store (`_prove`) in a temporary
    beside *db* before anything is touched. It is then copied *into* the live database
    with SQLite's backup API, under SQLite's locks, so a facerec window that has the
    store open sees the restored gallery (the generation moves past both old values,
    which makes running processes reload) instead of writing on into a replaced file.
    The index is deleted: it is rebuilt. If the current store holds anyone, *replace*
    must be given. A current store that cannot be opened (damaged) is, with *replace*,
    renamed aside (never deleted); *notify* is told where it went.
    """
    folder = db.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {folder}: {_why(exc)}") from None
    remove_stale_temps(folder)
    tmp, incoming_people, incoming_gen = _unpack_checked(path, folder, passphrase)
    try:
        try:
            with FaceStore(db) as current:  # creates an empty store (mode 0600) if none
                present = current.people()
                current_gen = current.generation
        except StoreError as exc:
            if _in_use(db):
                raise BackupError(str(exc)) from None
            if not replace:
                raise BackupError(f"{exc}. To put the backup in its place, pass --replace "
                                  "(the damaged file is kept, renamed)") from None
            aside = _set_aside(db)
            if notify is not None:
                notify(f"the damaged store was moved to {aside}")
            FaceStore(db).close()  # a new empty store (mode 0600) to copy into
            present, current_gen = [], 0
        if present and not replace:
            raise BackupError(
                f"the data directory already holds {len(present)} people; "
                "pass --replace to overwrite them with the backup")
        try:
            src = sqlite3.connect(tmp)
            dst = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                # The new generation is past both old ones, and no history reaches behind
                # it: caches of either gallery reload in full instead of applying changes.
                # Set in the copy, so the gallery and its generation arrive in one step.
                gen = str(max(incoming_gen, current_gen) + 1)
                with src:
                    src.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (gen,))
                    src.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('history_from', ?)",
                                (gen,))
                page = dst.execute("PRAGMA page_size").fetchone()[0]
                if src.execute("PRAGMA page_size").fetchone()[0] != page:
                    # SQLite cannot copy pages of another size into a WAL database.
                    src.execute("PRAGMA journal_mode = DELETE")
                    src.execute(f"PRAGMA page_size = {int(page)}")
                    src.execute("VACUUM")
                src.backup(dst)  # one write transaction: all of it, or nothing
                try:
                    dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError as exc:  # a reader holds the WAL: later
                    log.debug("checkpoint after restore deferred: %s", exc)
            finally:
                dst.close()
                src.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot write the face store {db}: {exc}; nothing was "
                              "restored") from None
        for stale in (index, index.with_name(index.name + ".json")):
            stale.unlink(missing_ok=True)
    finally:
        _remove_db(tmp)
    return incoming_people


def restore_into(path: Path, store: Any, passphrase: str | None = None,
                 replace: bool = False, *, scratch: Path) -> int:
    """Replace a shared gallery (a `PostgresStore`) with the one in a backup; one transaction.

    The backup is verified and proven a facerec store (in *scratch*, the data directory)
    before the database is touched; every workstation's cache then reloads in full (see
    `PostgresStore.replace_with`).
    """
    remove_stale_temps(scratch)
    tmp, _, _ = _unpack_checked(path, scratch, passphrase)
    try:
        with FaceStore(tmp) as incoming:
            dump = incoming.dump()
    except StoreError as exc:
        raise BackupError(f"{path}: does not hold a usable face store ({exc})") from None
    finally:
        _remove_db(tmp)
    try:
        people: int = store.replace_with(dump, replace=replace)
    except StoreError as exc:
        raise BackupError(str(exc)) from None
    return people
