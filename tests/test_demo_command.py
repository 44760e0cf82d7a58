"""`fature demo` end to end on the embedded PostgreSQL: no database configured at all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_runs_with_nothing_configured(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    env.update(FATURE_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    demo = subprocess.Popen(
        [sys.executable, "-m", "cli", "demo", "--scale", "tiny", "--port", str(port), "--no-simulate"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        admin = None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            output.append(line)
            if line.strip().startswith("admin:"):
                admin = line.split()[-1]
            if "Application startup complete" in line:
                break
        assert admin, "".join(output)
        assert any(f"http://127.0.0.1:{port}/graphql" in line for line in output)
        headers = {"Authorization": f"Bearer {admin}"}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql", headers=headers, timeout=10,
            json={"query": "{ ranking(first: 1) { edges { node { id totalCpaEarned } } } }"},
        ).json()
        assert "errors" not in answer, answer
        assert len(answer["data"]["ranking"]["edges"]) == 1
        assert answer["extensions"]["asOf"]
    finally:
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=60)
        output.append(rest or "")
    assert demo.returncode in (0, 130), "".join(output)
    assert "stopped embedded PostgreSQL" in "".join(output)
