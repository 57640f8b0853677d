"""Move a whole gallery between machines as one file, optionally encrypted.

Format: a magic line, one JSON header line, then the payload (a consistent copy of the
SQLite store made with SQLite's online backup API).

* Plain backups record the payload's SHA-256 in the header; a changed byte is refused.
* Encrypted backups derive a 256-bit key from the passphrase with scrypt (n=2^15, r=8,
  p=1; random 16-byte salt) and seal the payload with AES-256-GCM (random 12-byte
  nonce), the header bound in as associated data. A wrong passphrase and a tampered
  file are refused alike (GCM authentication fails); nothing is written.

Only the store is backed up: the index is derived data and is rebuilt on restore.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from app.pipeline.errors import FacerecError, StoreError
from app.pipeline.store import BUSY_TIMEOUT_MS, FaceStore, Store, merge_into, read_only_uri

MAGIC = b"FACEREC-BACKUP 1\n"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class BackupError(FacerecError):
    """A backup cannot be written, or a file cannot be restored."""


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _snapshot(db: Path) -> bytes:
    """A consistent copy of a live SQLite database (safe while others read or write)."""
    if not db.exists():
        raise BackupError(f"no face store at {db}: nothing to back up")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "faces.db"
        try:
            src = sqlite3.connect(read_only_uri(db), uri=True)  # works in a read-only folder
            dst = sqlite3.connect(copy)
            with dst:
                src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
            src.close()
            dst.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read the face store {db}: {exc}") from None
        return copy.read_bytes()


def _snapshot_of(store: Store) -> bytes:
    """A shared gallery as a SQLite payload: the same backup format for both engines."""
    dump = store.dump()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "faces.db"
        with FaceStore(copy) as local:
            if dump.people:
                merge_into(local, dump)
        return _snapshot(copy)


def write_backup(db: Path | Store, out: Path, passphrase: str | None = None) -> dict[str, object]:
    """Write the store at *db* (a SQLite file, or an open shared store) to *out*; return the header."""
    payload = _snapshot(db) if isinstance(db, Path) else _snapshot_of(db)
    header: dict[str, object] = {"format": 1, "size": len(payload)}
    if passphrase:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, nonce = os.urandom(16), os.urandom(12)
        header.update(encrypted=True, kdf="scrypt", n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                      salt=salt.hex(), cipher="AES-256-GCM", nonce=nonce.hex())
        head = json.dumps(header, sort_keys=True).encode() + b"\n"
        body = AESGCM(_derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(
            nonce, payload, MAGIC + head)
    else:
        header.update(encrypted=False, sha256=hashlib.sha256(payload).hexdigest())
        head = json.dumps(header, sort_keys=True).encode() + b"\n"
        body = payload
    tmp = out.with_name(out.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + head + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"cannot write {out}: {exc.strerror or exc}") from None
    return header


def read_backup(path: Path, passphrase: str | None = None) -> bytes:
    """Verify a backup file and return the SQLite payload.

    Raises
    ------
    BackupError
        Not a backup, damaged or tampered, encrypted without (or with a wrong) passphrase.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data.startswith(MAGIC):
        raise BackupError(f"{path}: not a facerec backup")
    end = data.find(b"\n", len(MAGIC))
    try:
        head = data[len(MAGIC):end + 1]
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("format") != 1:
            raise ValueError("unknown format")
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{path}: damaged backup header") from None
    body = data[end + 1:]
    if header.get("encrypted"):
        if not passphrase:
            raise BackupError(f"{path}: the backup is encrypted; a passphrase is needed")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            key = _derive(passphrase, bytes.fromhex(header["salt"]), int(header["n"]),
                          int(header["r"]), int(header["p"]))
            payload = AESGCM(key).decrypt(bytes.fromhex(header["nonce"]), body, MAGIC + head)
        except InvalidTag:
            raise BackupError(f"{path}: wrong passphrase, or the file was altered") from None
        except (KeyError, ValueError, TypeError):
            raise BackupError(f"{path}: damaged backup header") from None
    else:
        payload = body
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise BackupError(f"{path}: the backup is damaged or was altered (checksum mismatch)")
    return payload


def restore_backup(path: Path, db: Path, index: Path, passphrase: str | None = None,
                   replace: bool = False) -> int:
    """Replace the store at *db* with the gallery in a backup; return its number of people.

    The backup is verified and opened as a facerec store before anything is touched. It
    is then copied *into* the live database with SQLite's backup API, under SQLite's
    locks, so a facerec window that has the store open sees the restored gallery (the
    generation moves past both old values, which makes running processes reload)
    instead of writing on into a replaced file. The index is deleted: it is rebuilt.
    If the current store holds anyone, *replace* must be given.
    """
    payload = read_backup(path, passphrase)
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=".restore-", suffix=".db", dir=db.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        try:
            with FaceStore(tmp) as incoming:
                incoming_people = len(incoming.people())
                incoming_gen = incoming.generation
                incoming.gallery()  # every embedding must be well-formed
        except StoreError as exc:
            raise BackupError(f"{path}: does not hold a usable face store ({exc})") from None
        with FaceStore(db) as current:  # creates an empty store (mode 0600) if none
            present = current.people()
            if present and not replace:
                raise BackupError(
                    f"the data directory already holds {len(present)} people; "
                    "pass --replace to overwrite them with the backup")
            current_gen = current.generation
        src = sqlite3.connect(tmp)
        dst = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            src.backup(dst)
            # The new generation is past both old ones, and no history reaches behind
            # it: caches of either gallery reload in full instead of applying changes.
            gen = str(max(incoming_gen, current_gen) + 1)
            with dst:
                dst.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (gen,))
                dst.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('history_from', ?)",
                            (gen,))
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise BackupError(f"cannot write the face store {db}: {exc}") from None
        finally:
            src.close()
            dst.close()
        for stale in (index, index.with_name(index.name + ".json")):
            stale.unlink(missing_ok=True)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
    return incoming_people


def restore_into(path: Path, store: Any, passphrase: str | None = None,
                 replace: bool = False) -> int:
    """Replace a shared gallery (a `PostgresStore`) with the one in a backup; one transaction.

    The backup is verified and read as a facerec store before the database is touched;
    every workstation's cache then reloads in full (see `PostgresStore.replace_with`).
    """
    payload = read_backup(path, passphrase)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "faces.db"
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        try:
            with FaceStore(copy) as incoming:
                dump = incoming.dump()
        except StoreError as exc:
            raise BackupError(f"{path}: does not hold a usable face store ({exc})") from None
    try:
        people: int = store.replace_with(dump, replace=replace)
    except StoreError as exc:
        raise BackupError(str(exc)) from None
    return people
