"""Tools a test needs, installed by the test setup itself on a fresh machine: npm packages
(pinned, into one shared folder) and Debian packages. A missing tool that cannot be installed
fails the test that needs it with the reason: it never skips silently."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Outside the work tree (a clean clone stays clean) and shared by every run on the machine.
NPM_HOME = Path(os.environ.get("FATURE_TEST_TOOLS", Path.home() / ".cache" / "fature-test-tools"))


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """One installer at a time across processes (pytest workers, parallel runs)."""
    NPM_HOME.mkdir(parents=True, exist_ok=True)
    with open(NPM_HOME / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        debian_packages({"node": "nodejs", "npm": "npm"})
        node = shutil.which("node")
    assert node is not None, "Node.js is needed and could not be installed (apt-get install nodejs npm)"
    return node


def npm_packages(*specs: str) -> Path:
    """The ``node_modules`` folder holding every ``name@version`` of ``specs`` (installed from
    the npm registry on first use, exactly those versions)."""
    node_binary()
    with _locked("npm"):
        manifest = NPM_HOME / "package.json"
        wanted = dict(spec.rsplit("@", 1) if spec.rfind("@") > 0 else (spec, "latest") for spec in specs)
        installed: dict[str, str] = {}
        if manifest.exists():
            installed = json.loads(manifest.read_text()).get("dependencies", {})
        missing = [f"{n}@{v}" for n, v in wanted.items()
                   if installed.get(n) != v or not (NPM_HOME / "node_modules" / n / "package.json").exists()]
        if missing:
            if not manifest.exists():
                manifest.write_text(json.dumps({"name": "fature-test-tools", "private": True}))
            done = subprocess.run(
                ["npm", "install", "--save-exact", "--no-audit", "--no-fund", "--loglevel=error", *missing],
                cwd=NPM_HOME, capture_output=True, text=True, timeout=600,
            )
            assert done.returncode == 0, f"npm install {' '.join(missing)} failed:\n{done.stderr[-2000:]}"
    return NPM_HOME / "node_modules"


def debian_packages(binaries: dict[str, str]) -> None:
    """Make sure each binary of ``binaries`` (binary -> Debian package) is on PATH, installing
    the packages of the missing ones with apt-get (as root, or through sudo)."""
    missing = sorted({package for binary, package in binaries.items() if shutil.which(binary) is None})
    if not missing:
        return
    with _locked("apt"):
        missing = sorted({package for binary, package in binaries.items() if shutil.which(binary) is None})
        if not missing:
            return
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode != 0:  # a stale package index: refresh it once and retry
            subprocess.run([*prefix, "apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200)
        assert done.returncode == 0, f"apt-get install {' '.join(missing)} failed:\n{done.stderr[-2000:]}"
    still = [binary for binary in binaries if shutil.which(binary) is None]
    assert not still, f"installed {missing} but {still} is still not on PATH"


def run_node(script: str, node_modules: Path, *args: str, timeout: float = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Node.js ES module ``script`` (its text) that imports from ``node_modules``."""
    path = node_modules.parent / f"script-{os.getpid()}-{abs(hash(script))}.mjs"
    path.write_text(script)
    try:
        return subprocess.run([node_binary(), str(path), *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
    finally:
        path.unlink(missing_ok=True)
