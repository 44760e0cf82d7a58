"""Fature as a cluster on loopback (issue 16), every part a real process started here: a
PostgreSQL primary and its streaming replica (tests/support/cluster.py), Redis, two API
processes (``fature serve``, scheduler off, reading the replica) and two ETL workers
(``fature etl worker``, one leader). The robust and operation databases both live on the test
primary (the operation one seeded with ``fature demo seed --scale tiny``).

What it shows, one test each, in this order (they share the cluster):
- an ETL commit is served by both API processes within ``FRESH_WITHIN_S``, and no answer's
  ``asOf`` is ahead of the data it shows (the run it reports, checked against etl.runs on the
  primary);
- stopping the replica moves reads to the primary with no failed request, and commits are
  still served fresh;
- killing one API process fails no request that a client retries once on the other;
- killing the leading worker in the middle of a cycle (held there by a lock the test takes on
  a table the cycle writes) loses nothing: the standby takes over, its cycle commits, and the
  ledger and aggregates equal those of a copy of the robust database taken before the kill
  after one cycle that nobody killed, over the same operation data. (Not a fresh full
  recompute: the simulated activity moves referrals, and the ledger rightly keeps a CPA with
  the upline of its validation day, which a recompute from scratch would not.)

The module takes 35-40 s on 2 shared cores (about 10 s to build the cluster and its data),
about a minute when the cores are busy; ``pytest -s`` prints its timings.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, Service, free_port, pg_bin_dir
from tests.support.recompute import LEDGER

pytestmark = pytest.mark.slow

FRESH_WITHIN_S = 5.0
TAKEOVER_WITHIN_S = 10.0
SECRET = "cluster-test-secret-0123456789abcdef0123"

QUERY = """
{ syncStatus { lastSuccessfulRun { runId sourceAsOf finishedAt } }
  affiliates(first: 20) { edges { node { affiliateId totalReferrals totalValidatedReferrals } } } }
"""

# A checksum of each aggregate the ETL writes (not when a row was last written).
AGGREGATES = ("affiliate_periodic_summaries", "affiliate_mlm_structure", "affiliates",
              "affiliate_referrals", "affiliate_cpa_validations")


def checksums(cluster: Cluster, database: str) -> dict[str, str]:
    row = "(to_jsonb(t) - 'updated_at' - 'created_at' - 'id')::text"
    return {t: cluster.primary.psql(f"SELECT md5(string_agg({row}, ',' ORDER BY {row})) FROM {t} t", database)
            for t in AGGREGATES}


@dataclass
class Deployment:
    cluster: Cluster
    env: dict[str, str]
    apis: list[Service]
    token: str
    timings: dict[str, float] = field(default_factory=dict)

    def runs(self) -> dict[int, tuple[datetime, datetime, str, str]]:
        """etl.runs on the primary: id -> (source_as_of, finished_at, status, trigger)."""
        out = {}
        text = self.cluster.primary.psql(
            "SELECT id, source_as_of, finished_at, status, trigger FROM etl.runs ORDER BY id", "fature")
        for line in text.splitlines():
            run_id, as_of, finished, status, trigger = line.split("|")
            out[int(run_id)] = (parse(as_of), parse(finished), status, trigger)
        return out

    def etl_run(self) -> int:
        """One cycle by ``fature etl run`` (retried while the worker's own cycle holds the
        lock); the id of the run it committed."""
        for _ in range(20):
            try:
                output = self.cluster.run_cli(["etl", "run"], self.env)
            except RuntimeError as exc:
                if "another" in str(exc).lower() or "busy" in str(exc).lower():
                    time.sleep(0.5)
                    continue
                raise
            return int(output.split("ETL run ", 1)[1].split()[0])
        raise AssertionError("fature etl run stayed busy for 10 s")

    def simulate(self, seconds: float = 1.0) -> None:
        """New source activity (deposits, bets, sign-ups) in the operation database."""
        self.cluster.run_cli(["demo", "simulate", "--rate", "200", "--duration", str(seconds)], self.env)


def parse(text: str) -> Any:
    """A timestamp of psql's or of an answer's; None for an empty one (a run still running)."""
    text = text.strip()
    if not text:
        return None
    if text.endswith("+00"):
        text += ":00"
    return datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))


def ask(client: httpx.Client, api: Service, token: str) -> dict[str, Any]:
    """One answer of QUERY from ``api``; raises on anything but a 200 without errors."""
    answer = client.post(api.base_url + "/graphql", json={"query": QUERY},
                         headers={"authorization": f"Bearer {token}"}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"errors from {api.name}: {body['errors']}")
    return body


def as_of_problem(body: dict[str, Any], runs: dict[int, tuple[datetime, datetime, str, str]]) -> str | None:
    """Why the answer's asOf is ahead of the data it shows, or None."""
    shown = body["data"]["syncStatus"]["lastSuccessfulRun"]
    as_of = parse(body["extensions"]["asOf"])
    source_as_of, committed, _, _ = runs[int(shown["runId"])]
    if as_of > source_as_of or as_of > committed:
        return (f"asOf {as_of.isoformat()} is ahead of run {shown['runId']} it shows "
                f"(source as of {source_as_of.isoformat()}, committed {committed.isoformat()})")
    return None


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    # client_connection_check_interval: a killed client's backend ends (and drops its locks) at
    # once, even while it waits on a lock.
    with Cluster.start(postgres_options={"client_connection_check_interval": "100ms"}) as cluster:
        timings["primary + replica + redis up"] = time.monotonic() - started
        robust, operation = cluster.create_database("fature"), cluster.create_database("fature_operation")
        env = {
            "FATURE_DATABASE_URL": robust,
            "FATURE_OPERATION_DATABASE_URL": operation,
            "FATURE_DATABASE_READ_URLS": cluster.replica.url("fature"),
            "FATURE_REDIS_URL": cluster.redis_url,
            "FATURE_JWT_SECRET": SECRET,
            "FATURE_DATA_DIR": str(cluster.root / "fature-data"),
            "FATURE_RATE_LIMIT": "1000000/minute",
            "FATURE_RATE_LIMIT_BURST": "100000/second",
            "FATURE_ETL_INTERVAL_MINUTES": "1",
            "FATURE_BACKUP_ENABLED": "false",
            "FATURE_READY_MAX_ETL_AGE_SECONDS": "86400",
        }
        cluster.run_cli(["demo", "seed", "--scale", "tiny"], env)
        cluster.run_cli(["db", "upgrade"], env)
        cluster.run_cli(["etl", "run"], env)
        timings["seeded, migrated, first ETL run"] = time.monotonic() - started
        token = cluster.run_cli(["token", "--role", "admin", "--ttl", "1h"], env).strip()
        apis = []
        for name in ("api-1", "api-2"):
            port = free_port()
            apis.append(cluster.spawn(name, ["serve", "--host", "127.0.0.1", "--port", str(port)],
                                      {**env, "FATURE_ETL_SCHEDULER_ENABLED": "false"}, port=port))
        for api in apis:
            api.wait_http("/healthz")
        timings["two API processes up"] = time.monotonic() - started
        try:
            yield Deployment(cluster, env, apis, token, timings)
        finally:
            timings["total"] = time.monotonic() - started
            print("cluster timings:", {k: round(v, 1) for k, v in timings.items()})


def test_an_etl_commit_is_served_by_both_api_processes_within_5_s_and_as_of_is_never_ahead(
        deployment: Deployment) -> None:
    cluster, apis, token = deployment.cluster, deployment.apis, deployment.token
    with httpx.Client() as client:
        for api in apis:  # warm: the answers (and the response cache) of the first run
            ask(client, api, token)
        waits = []
        for _ in range(2):
            deployment.simulate(1.0)
            run_id = deployment.etl_run()
            committed = time.monotonic()
            runs = deployment.runs()
            assert runs[run_id][2] == "success"
            for api in apis:
                problems = []
                while True:
                    body = ask(client, api, token)
                    problem = as_of_problem(body, runs)
                    if problem:
                        problems.append(problem)
                    if int(body["data"]["syncStatus"]["lastSuccessfulRun"]["runId"]) >= run_id:
                        break
                    assert time.monotonic() - committed < FRESH_WITHIN_S, (
                        f"{api.name} still shows run {body['data']['syncStatus']['lastSuccessfulRun']['id']}"
                        f" {FRESH_WITHIN_S} s after run {run_id} committed")
                    time.sleep(0.02)
                waits.append(time.monotonic() - committed)
                assert not problems, "\n".join(problems)
                assert parse(body["extensions"]["asOf"]) == runs[run_id][0], "the fresh answer's asOf is its run's"
        deployment.timings["commit to fresh answer, worst of both APIs (s)"] = max(waits)
    # The reads went to the replica (the API processes' connections are there).
    assert int(cluster.replica.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fature' AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid()", "fature")) > 0, "no API connection on the replica"


def load(apis: list[Service], token: str, seconds: float, threads: int = 4, retry: bool = False,
         during: Any = None, at: float = 1.0) -> tuple[int, list[str], dict[str, int]]:
    """``threads`` clients asking QUERY round-robin over ``apis`` for ``seconds``; ``during()``
    runs ``at`` seconds in. With ``retry``, a failed request is asked once of the other API.
    Returns (answers, failures, answers per API)."""
    stop = time.monotonic() + seconds
    failures: list[str] = []
    answered: dict[str, int] = {api.name: 0 for api in apis}
    lock = threading.Lock()

    def client_loop(offset: int) -> None:
        with httpx.Client() as client:
            i = offset
            while time.monotonic() < stop:
                first, other = apis[i % len(apis)], apis[(i + 1) % len(apis)]
                i += 1
                for target in ([first, other] if retry else [first]):
                    try:
                        ask(client, target, token)
                    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                        error = f"{target.name}: {type(exc).__name__}: {exc}"
                        continue
                    with lock:
                        answered[target.name] += 1
                    break
                else:
                    with lock:
                        failures.append(error)

    workers = [threading.Thread(target=client_loop, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    if during is not None:
        time.sleep(at)
        during()
    for w in workers:
        w.join()
    return sum(answered.values()), failures, answered


def metric(api: Service, name: str, node: str) -> float:
    """The value of ``name{node="<node>"}`` in the API's /metrics (0 when absent)."""
    text = httpx.get(api.base_url + "/metrics", timeout=10).text
    prefix = f'{name}{{node="{node}"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def replicas_in_rotation(api: Service) -> Any:
    return httpx.get(api.base_url + "/readyz", timeout=10).json()["checks"].get("replicas_in_rotation")


def test_stopping_the_replica_moves_reads_to_the_primary_without_errors(deployment: Deployment) -> None:
    cluster, apis, token = deployment.cluster, deployment.apis, deployment.token
    with httpx.Client() as client:  # the replica serves reads before (this test alone too)
        for api in apis:
            for _ in range(3):
                ask(client, api, token)
    for api in apis:
        assert replicas_in_rotation(api) == 1, api.name
        assert metric(api, "fature_node_reads_total", "replica1") > 0, f"{api.name} never read the replica"
    primary_reads = {api.name: metric(api, "fature_node_reads_total", "primary") for api in apis}
    answers, failures, _ = load(apis, token, seconds=4.0, during=lambda: cluster.replica.stop("fast"))
    assert not cluster.replica.running()
    assert answers > 0
    assert not failures, (f"{len(failures)} of {answers + len(failures)} requests failed:\n" + "\n".join(failures[:10])
                          + "".join(f"\n--- {api.name}\n{errors_in(api)}" for api in apis))
    # Readiness and the gauges show the replica out of rotation; the reads went to the primary.
    for api in apis:
        wait_for(lambda api=api: replicas_in_rotation(api) == 0, 5, f"{api.name}'s /readyz to drop the replica")
        assert metric(api, "fature_replica_in_rotation", "replica1") == 0
        assert metric(api, "fature_node_reads_total", "primary") > primary_reads[api.name], api.name
    with httpx.Client() as client:
        # Commits are still served fresh, from the primary.
        deployment.simulate(0.5)
        run_id = deployment.etl_run()
        committed = time.monotonic()
        runs = deployment.runs()
        for api in apis:
            while True:
                body = ask(client, api, token)
                assert as_of_problem(body, runs) is None, as_of_problem(body, runs)
                if int(body["data"]["syncStatus"]["lastSuccessfulRun"]["runId"]) >= run_id:
                    break
                assert time.monotonic() - committed < FRESH_WITHIN_S, f"{api.name} not fresh without the replica"
                time.sleep(0.02)
    # Back: the replica catches up and returns to the rotation.
    cluster.replica.start()
    cluster.wait_replica_streaming()
    for api in apis:
        wait_for(lambda api=api: replicas_in_rotation(api) == 1, 15, f"{api.name} to take the replica back")


def test_killing_one_api_process_fails_no_request_retried_on_the_other(deployment: Deployment) -> None:
    apis, token = deployment.apis, deployment.token
    victim = apis[0]
    answers, failures, per_api = load(apis, token, seconds=4.0, retry=True, during=victim.kill)
    assert not victim.alive()
    assert per_api[apis[0].name] > 0 and per_api[apis[1].name] > 0, per_api
    assert not failures, f"{len(failures)} of {answers + len(failures)} requests failed twice:\n" + "\n".join(
        failures[:10])


def test_killing_the_leading_worker_mid_cycle_loses_nothing_and_the_standby_takes_over(
        deployment: Deployment) -> None:
    cluster, env = deployment.cluster, deployment.env
    deployment.simulate(1.0)  # something for the killed cycle to write
    before = set(deployment.runs())
    # The oracle: a copy of the robust database as it is now, which no one will kill.
    twin = twin_of(cluster, "fature", "fature_twin")
    # Hold the cycle mid-way: it may read everything, but its first write to the summaries
    # waits behind this SHARE lock (the API's reads do not).
    holder = subprocess.Popen(
        [str(pg_bin_dir() / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(cluster.primary.port),
         "-U", "postgres", "-d", "fature"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    try:
        assert holder.stdin is not None
        holder.stdin.write("BEGIN; LOCK TABLE affiliate_periodic_summaries IN SHARE MODE; SELECT 1;\n")
        holder.stdin.flush()
        wait_for(lambda: cluster.primary.psql(
            "SELECT count(*) FROM pg_locks WHERE mode = 'ShareLock' AND relation = "
            "'affiliate_periodic_summaries'::regclass AND granted", "fature") == "1", 10, "the test's lock")
        leader = cluster.spawn("worker-a", ["etl", "worker"], env)
        leader.wait_output(" leads: ", 60)
        standby = cluster.spawn("worker-b", ["etl", "worker"], env)
        standby.wait_output("standing by", 60)
        # The leader's catch-up cycle is under way and waits on the lock, mid-transaction.
        wait_for(lambda: cluster.primary.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fature' AND wait_event_type = 'Lock'",
            "fature") == "1", 30, "the leader's cycle to reach the summaries")
        killed = [r for r, (_, _, status, _) in deployment.runs().items() if status == "running"]
        assert len(killed) == 1 and killed[0] not in before
        backend = cluster.primary.psql(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'fature' AND wait_event_type = 'Lock'", "fature")
        leader.kill()
        killed_at = time.monotonic()
        standby.wait_output(" leads: ", TAKEOVER_WITHIN_S)
        deployment.timings["worker takeover after kill -9 (s)"] = time.monotonic() - killed_at
        # The killed cycle's backend is gone with its transaction.
        wait_for(lambda: cluster.primary.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}") == "0", 10,
            "the killed cycle's backend to end")
    finally:
        if holder.stdin is not None:
            holder.stdin.write("COMMIT;\n\\q\n")
            holder.stdin.close()
        holder.wait(timeout=30)
    # The standby's cycle (its catch-up, or the next interval one if that found the lock busy).
    wait_for(lambda: any(r > killed[0] and status == "success"
                         for r, (_, _, status, _) in deployment.runs().items()), 90, "the standby's cycle")
    runs = deployment.runs()
    assert runs[killed[0]][2] == "failed", f"the killed run is {runs[killed[0]][2]}, not marked abandoned"
    assert standby.alive()
    assert "cycle done" in standby.output(), standby.output()[-3000:]
    # Nothing lost: the same as the copy taken before the kill after one cycle no one killed,
    # over the same operation data.
    standby.stop()  # no cycle moves the robust database while the two are compared
    cluster.run_cli(["etl", "run"], {**env, "FATURE_DATABASE_URL": twin})
    ledger_sql = " ".join(LEDGER.split())
    assert cluster.primary.psql(ledger_sql, "fature") == cluster.primary.psql(ledger_sql, "fature_twin")
    assert checksums(cluster, "fature") == checksums(cluster, "fature_twin")


def twin_of(cluster: Cluster, database: str, name: str) -> str:
    """A copy of ``database`` (pg_dump | pg_restore, while its clients stay connected); its URL."""
    dump = cluster.root / f"{name}.dump"
    url = cluster.create_database(name)
    common = ["-h", "127.0.0.1", "-p", str(cluster.primary.port), "-U", "postgres"]
    subprocess.run([str(pg_bin_dir() / "pg_dump"), *common, "-Fc", "-d", database, "-f", str(dump)],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([str(pg_bin_dir() / "pg_restore"), *common, "-d", name, "--no-owner", str(dump)],
                   check=True, capture_output=True, timeout=120)
    return url


def errors_in(api: Service) -> str:
    """The API's log lines that are not access lines and speak of an error."""
    lines = [line for line in api.output().splitlines()
             if "fature.access" not in line and ("error" in line.lower() or "exception" in line.lower())]
    return "\n".join(lines[-20:])[-4000:]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")


