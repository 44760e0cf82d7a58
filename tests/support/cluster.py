"""A Fature cluster on loopback, started by the test itself (issue 16): a PostgreSQL primary
and its streaming replica made from the installed binaries, a Redis of its own, and Fature's
roles (``fature serve``, ``fature etl worker``) as real subprocesses.

Everything lives in one temporary directory and on free ports; every process is started in
its own session (process group) and stopped, then killed, on the way out, even when the test
fails. Use it as a context manager::

    with Cluster.start() as cluster:             # primary + replica + Redis, all running
        cluster.create_database("fature")         # on the primary (replicated at once)
        api = cluster.spawn("api-1", ["serve", "--port", str(free_port())], env={...})
        api.wait_http("/healthz")
        api.kill()                                 # SIGKILL to the whole process group

PostgreSQL refuses to run as root: when the tests run as root, the servers run as the
``postgres`` OS user (``runuser -u postgres --``) in directories chowned to it; otherwise as
the current user. The binaries are those of the newest major in /usr/lib/postgresql (or
``FATURE_TEST_PG_BIN_DIR``). Redis runs with ``--save "" --appendonly no`` (nothing on disk).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin_dir() -> Path:
    """The installed PostgreSQL binaries: FATURE_TEST_PG_BIN_DIR, else the newest major."""
    if os.environ.get("FATURE_TEST_PG_BIN_DIR"):
        return Path(os.environ["FATURE_TEST_PG_BIN_DIR"])
    root = Path("/usr/lib/postgresql")
    majors = sorted((p for p in root.glob("*/bin/initdb")), key=lambda p: int(p.parts[-3]))
    if not majors:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
    return majors[-1].parent


def _as_server_user(argv: Sequence[str]) -> list[str]:
    """``argv`` as the user PostgreSQL runs as (``postgres`` when we are root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


def _chown_to_server_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a group whose leader died
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


@dataclass
class PostgresNode:
    """One PostgreSQL server (primary or replica) in ``data``, listening on 127.0.0.1:``port``."""

    name: str
    data: Path
    port: int
    socket_dir: Path
    log: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(_as_server_user([str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data), *args]))

    def start(self) -> None:
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1"
                   f" -c unix_socket_directories={self.socket_dir}")
        self._ctl("-w", "-t", "60", "-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no checkpoint)."""
        if self.running():
            self._ctl("-w", "-t", "60", "-m", mode, "stop")

    def running(self) -> bool:
        done = subprocess.run(_as_server_user([str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data), "status"]),
                              capture_output=True, text=True)
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` (autocommit) and return psql's unaligned, tuples-only output."""
        done = _run([str(pg_bin_dir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-Atq",
                     "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql])
        return done.stdout.strip()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def server_pids(self) -> list[int]:
        """The postmaster and all its children (backends, walsender, checkpointer...)."""
        parent = self.postmaster_pid()
        pids = [parent]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == parent:
                        pids.append(int(entry.name))
        return pids


@dataclass
class Service:
    """A Fature role run as ``python -m cli ARGS`` in its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def base_url(self) -> str:
        assert self.port is not None, f"{self.name} does not listen"
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_http(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        """Until ``path`` answers 200 (fails early, with the log, if the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()[-4000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(self.base_url + path, timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} in {timeout} s:\n{self.output()[-4000:]}")

    def wait_output(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()[-4000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not print {text!r} in {timeout} s:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole process group (a crash: no shutdown code runs)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_group(self.proc)


@dataclass
class Cluster:
    """A primary, its streaming replica, Redis and the Fature processes spawned on them."""

    root: Path
    primary: PostgresNode
    replica: PostgresNode
    redis_port: int
    redis: subprocess.Popen[bytes] | None = None
    services: list[Service] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @classmethod
    @contextlib.contextmanager
    def start(cls, *, with_replica: bool = True, postgres_options: Mapping[str, str] | None = None
              ) -> Iterator[Cluster]:
        """Start everything; on the way out stop (then kill) every process and remove the
        temporary directory, whatever happened."""
        root = Path(tempfile.mkdtemp(prefix="fature-cluster-"))
        os.chmod(root, 0o755)
        cluster = cls(
            root=root,
            primary=PostgresNode("primary", root / "primary", free_port(), root / "sock", root / "primary.log"),
            replica=PostgresNode("replica", root / "replica", free_port(), root / "sock", root / "replica.log"),
            redis_port=free_port(),
        )
        try:
            cluster._start_primary(postgres_options or {})
            if with_replica:
                cluster._start_replica()
            cluster._start_redis()
            yield cluster
        finally:
            cluster.close()

    def _start_primary(self, options: Mapping[str, str]) -> None:
        (self.root / "sock").mkdir()
        _chown_to_server_user(self.root)
        _run(_as_server_user([str(pg_bin_dir() / "initdb"), "-D", str(self.primary.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]))
        # A test cluster: durability off for speed (the replica still streams every commit);
        # feedback so the replica's queries are not cancelled by the primary's vacuum.
        conf = {
            "fsync": "off", "full_page_writes": "off",
            "wal_level": "replica", "max_wal_senders": "5", "hot_standby": "on",
            "hot_standby_feedback": "on", "wal_receiver_status_interval": "1s",
            "shared_buffers": "64MB", "max_connections": "200", "timezone": "UTC",
            **options,
        }
        with open(self.primary.data / "postgresql.conf", "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = '{value}'\n")
        self.primary.start()

    def _start_replica(self) -> None:
        _run(_as_server_user([str(pg_bin_dir() / "pg_basebackup"), "-h", "127.0.0.1",
                              "-p", str(self.primary.port), "-U", "postgres", "-D", str(self.replica.data),
                              "-R", "-X", "stream", "-c", "fast", "--no-sync"]))
        self.replica.start()
        self.wait_replica_streaming()

    def wait_replica_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the replica is not streaming:\n{self.replica.log.read_text()[-3000:]}")

    def wait_replica_caught_up(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        target = self.primary.psql("SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replica.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
            time.sleep(0.05)
        raise RuntimeError(f"the replica did not replay up to {target} in {timeout} s")

    def _start_redis(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            # tests/support/tools installs it (imported by name: bench/ imports this module and
            # mypy, which checks bench/, need not follow into the test tools).
            importlib.import_module("tests.support.tools").debian_packages({"redis-server": "redis-server"})
            redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = open(self.root / "redis.log", "wb")
        self.redis = subprocess.Popen(
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.redis_port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` on the primary; its URL."""
        self.primary.psql(f'CREATE DATABASE "{name}"')
        return self.primary.url(name)

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str], port: int | None = None) -> Service:
        """``python -m cli ARGS`` from the repository, with ``env`` over an environment that
        keeps no ``FATURE_*`` of ours; output to ``<root>/<name>.log``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
        base["PYTHONUNBUFFERED"] = "1"
        base["PYTHONPATH"] = str(REPO)
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env={**base, **env},
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        service = Service(name, proc, log, port)
        self.services.append(service)
        return service

    def run_cli(self, args: Sequence[str], env: Mapping[str, str], timeout: float = 300) -> str:
        """``python -m cli ARGS`` to completion; its output (fails with it on a non-zero exit)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
        done = subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env={**base, "PYTHONPATH": str(REPO),
                              "COLUMNS": "200", **env}, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"fature {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def logs(self) -> str:
        """The tail of every log, for a failure's message."""
        parts = []
        for path in sorted(self.root.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                stop_group(self.redis)
        for node in (self.replica, self.primary):
            if (node.data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    node.stop("immediate")
                with contextlib.suppress(Exception):  # pg_ctl failed: the postmaster itself
                    os.kill(node.postmaster_pid(), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def process_cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (from /proc/<pid>/stat), in seconds; gone pids count 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out
