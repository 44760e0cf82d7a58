"""`fature demo` end to end on the embedded PostgreSQL: no database configured at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli import EXIT_PORT_IN_USE

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
        tokens: dict[str, str] = {}
        while time.monotonic() < deadline:
            line = demo.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            output.append(line)
            words = line.split()
            if words and words[0] in ("admin:", "analyst:", "affiliate"):
                tokens[words[0].rstrip(":")] = words[-1]
            if "Application startup complete" in line:
                break
        assert set(tokens) == {"admin", "analyst", "affiliate"}, "".join(output)
        admin = tokens["admin"]
        assert any(f"http://127.0.0.1:{port}/graphql" in line for line in output)
        # The hints name commands that exist from the repository's root, as printed.
        hints = [line.strip() for line in output if line.strip().startswith("./dev token")]
        assert hints and not any("fature token" in line for line in output), "".join(output)
        for hint in hints:
            minted = subprocess.run(hint.replace("ID", "101").split(), cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert minted.returncode == 0 and minted.stdout.count(".") == 2, (hint, minted.stderr)
        # The printed curl line runs as printed and answers the affiliate's own totals.
        curl = next(line.strip() for line in output if line.strip().startswith("curl "))
        answered = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        mine = json.loads(answered.stdout)
        assert "errors" not in mine and mine["data"]["affiliate"]["totalCpaEarned"], answered.stdout
        # The analyst token reads; a second demo on the same port stops before printing anything.
        analyst = httpx.post(f"http://127.0.0.1:{port}/graphql", timeout=10,
                             headers={"Authorization": f"Bearer {tokens['analyst']}"},
                             json={"query": "{ syncStatus { dataAsOf } }"}).json()
        assert analyst["data"]["syncStatus"]["dataAsOf"], analyst
        second = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--scale", "tiny", "--port", str(port), "--no-simulate"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == EXIT_PORT_IN_USE, (second.returncode, second.stdout, second.stderr)
        assert second.stdout == "" and f"port {port}" in second.stderr and "in use" in second.stderr
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


def test_serve_on_a_busy_port_fails_first_with_its_own_exit_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    env.update(FATURE_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (["serve", "--port", str(port)], ["demo", "--port", str(port), "--scale", "tiny"]):
            done = subprocess.run([sys.executable, "-m", "cli", *command], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == EXIT_PORT_IN_USE == 4, (command, done.stdout, done.stderr)
            assert done.stdout == "", done.stdout  # nothing printed, nothing started
            assert done.stderr.count("\n") == 1 and f"port {port} on 127.0.0.1 is already in use" in done.stderr
    # Nothing was set up: no embedded PostgreSQL was started for the refused commands.
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_demo_seed_takes_every_scale_of_the_plan() -> None:
    # Issue 17's seed3 (three times the strategy's operator) is a scale like the others: the
    # command passes every scale the plan knows on to the generator, and names them all when
    # refusing another. (An unreachable database stops it right after, before any row.)
    from demo.plan import SCALE_FACTORS

    env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    env.update(
        FATURE_DATABASE_URL="postgresql://fature@127.0.0.1:1/robust",
        FATURE_OPERATION_DATABASE_URL="postgresql://fature@127.0.0.1:1/operation",
        COLUMNS="200",
    )

    def seed(scale: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", "demo", "seed", "--scale", scale],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )

    assert "seed3" in SCALE_FACTORS
    for scale in SCALE_FACTORS:
        result = seed(scale)
        assert result.returncode == 1 and "unknown scale" not in result.stderr
        assert "127.0.0.1" in result.stderr  # it got as far as the database
    refused = seed("huge")
    assert refused.returncode == 1
    assert "unknown scale 'huge'" in refused.stderr
    assert all(scale in refused.stderr for scale in SCALE_FACTORS)
