"""A throwaway primary and its streaming replica, made from the installed PostgreSQL binaries
in temporary directories on free ports (run as the ``postgres`` OS user: PostgreSQL refuses
root).

    with streaming_pair() as pair:     # pair.primary_url, pair.replica_url (trust auth, user postgres)
        pair.pause_replay() / pair.resume_replay() / pair.stop_replica() / pair.start_replica()

Shared by the replica tests (tests/db/test_replicas.py) and usable by the cluster harness:
``streaming_pair()`` is a context manager, ``StreamingPair`` holds the ports and directories.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


@dataclass
class StreamingPair:
    root: Path
    primary_port: int
    replica_port: int
    bin: Path

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.root / "replica"

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    def _ctl(self, data: Path, action: str, port: int | None = None) -> None:
        args = [str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(data / "log"), action]
        if port is not None:
            args[1:1] = ["-o", f"-p {port} -k {self.root}"]
        _as_postgres(*args)

    def start_replica(self) -> None:
        self._ctl(self.replica_dir, "start", self.replica_port)

    def stop_replica(self) -> None:
        self._ctl(self.replica_dir, "stop")

    def psql(self, port: int, sql: str, database: str = "postgres") -> str:
        done = _as_postgres(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            "-d", database, "-At", "-c", sql)
        return done.stdout.strip()

    def pause_replay(self) -> None:
        self.psql(self.replica_port, "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.psql(self.replica_port, "SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written."""
        target = self.psql(self.primary_port, "SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql(self.replica_port, f"SELECT pg_last_wal_replay_lsn() >= '{target}'") == "t":
                return
            time.sleep(0.05)
        raise TimeoutError("the replica did not catch up")


@contextlib.contextmanager
def streaming_pair(replica_conf: str = "") -> Iterator[StreamingPair]:
    """A primary and its hot-standby replica (``pg_basebackup -R``), both torn down after;
    ``replica_conf``: lines added to the replica's postgresql.conf (e.g.
    ``max_standby_streaming_delay = 0`` to make recovery conflicts cancel reads at once)."""
    root = Path(tempfile.mkdtemp(prefix="fature-replica-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o755)
    pair = StreamingPair(root, free_port(), free_port(), pg_bin_dir())
    started: list[Path] = []
    try:
        _as_postgres(str(pair.bin / "initdb"), "-D", str(pair.primary_dir), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C")
        with (pair.primary_dir / "postgresql.conf").open("a") as conf:
            conf.write("listen_addresses = '127.0.0.1'\nwal_level = replica\nmax_wal_senders = 5\n"
                       "hot_standby = on\nfsync = off\nfull_page_writes = off\n"
                       "max_connections = 100\nshared_buffers = 32MB\n")
        with (pair.primary_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        pair._ctl(pair.primary_dir, "start", pair.primary_port)
        started.append(pair.primary_dir)
        _as_postgres(str(pair.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pair.primary_port),
                     "-U", "postgres", "-D", str(pair.replica_dir), "-R", "-X", "stream", "-c", "fast")
        if replica_conf:
            with (pair.replica_dir / "postgresql.conf").open("a") as conf:  # root may write it; postgres reads it
                conf.write(replica_conf + "\n")
        pair.start_replica()
        started.append(pair.replica_dir)
        yield pair
    finally:
        for data in reversed(started):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    _as_postgres(str(pair.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                 "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
