"""Live updates: GraphQL subscriptions over graphql-transport-ws on /graphql (web/subscriptions.py),
spoken by real clients against uvicorn: the npm ``graphql-ws`` client under Node, gql's
WebsocketsTransport, and the ``websockets`` library for what a well-behaved client never does.

The ETL tests write to a deployment of their own (the shared one is read-only)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from graphql import ExecutionResult
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from tests.support.clients import AFFILIATE, CHILD, GRANDCHILD, ROOT
from tests.support.deployment import Deployment, build_deployment, drop_deployment, rows, token
from tests.support.factories import Operation, etl
from tests.support.live import uvicorn_serving
from tests.support.tools import node_binary, npm_packages
from web.auth import mint_token
from web.persisted import sha256_hex

PROTOCOL = "graphql-transport-ws"
REPO = Path(__file__).resolve().parents[2]
TOTALS = """subscription Totals($id: ID!) { affiliateTotals(id: $id) {
  id totalReferrals totalDeposits totalBets totalGgr totalCpaEarned totalNetworkSize rankCpa } }"""
QUERY = """query Totals($id: ID!) { affiliate(id: $id) {
  id totalReferrals totalDeposits totalBets totalGgr totalCpaEarned totalNetworkSize rankCpa } }"""
UPDATED = "subscription { dataUpdated { runId dataAsOf } }"
UNTOUCHED = 308  # an inactive affiliate under 300 with no network: a deposit of 341 moves nothing of it
SUSPENDED = 341  # 'suspenso' in the deployment's operation data (every 11th of the tree)


@pytest.fixture(scope="module")
async def writable(robust_template: str) -> AsyncIterator[Deployment]:
    built = await build_deployment(robust_template)
    yield built
    await drop_deployment(built)


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/graphql"


def bearer(deployment: Deployment, role: str = "admin", affiliate_id: int | None = None, **kw: Any) -> str:
    return f"Bearer {token(deployment.settings, role, affiliate_id, **kw)}"


@asynccontextmanager
async def serving(deployment: Deployment, **overrides: Any) -> AsyncIterator[str]:
    settings = deployment.settings.model_copy(update=overrides)
    async with uvicorn_serving(settings, deployment.robust_url, log_level="warning") as url:
        yield url


@asynccontextmanager
async def connected(url: str, payload: dict[str, Any] | None) -> AsyncIterator[ClientConnection]:
    """A raw graphql-transport-ws connection, acknowledged (``payload`` None: no connection_init)."""
    async with websockets.connect(ws_url(url), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
        if payload is not None:
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert ack["type"] == "connection_ack", ack
        yield socket


async def closed_with(socket: ClientConnection, seconds: float = 5) -> tuple[int | None, str | None]:
    """The close code and reason the server ends the connection with (messages before it skipped)."""
    async def drain() -> None:
        async for _ in socket:
            pass
    try:
        await asyncio.wait_for(drain(), seconds)
    except websockets.ConnectionClosed:
        pass
    assert socket.close_code is not None, "the server did not close"
    return socket.close_code, socket.close_reason


async def refused(url: str, payload: dict[str, Any]) -> tuple[int | None, str | None]:
    async with websockets.connect(ws_url(url), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        return await closed_with(socket)


async def next_message(socket: ClientConnection, seconds: float = 10, skip_pings: bool = True) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), seconds))
        if skip_pings and message["type"] == "ping":
            await socket.send(json.dumps({"type": "pong"}))
            continue
        return message


async def subscribe(socket: ClientConnection, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
    await socket.send(json.dumps({"id": id, "type": "subscribe",
                                  "payload": {"query": query, "variables": variables or {}}}))


async def query(url: str, authorization: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(url + "/graphql", json={"query": document, "variables": variables},
                                     headers={"authorization": authorization})
    return response.json()


# --- authentication and the protocol's closes ------------------------------------------------


async def test_tokens_are_read_from_each_accepted_spelling_of_the_payload(deployment: Deployment) -> None:
    raw = token(deployment.settings, "admin")
    async with serving(deployment) as url:
        expected = (await query(url, f"Bearer {raw}", QUERY, {"id": str(ROOT)}))["data"]["affiliate"]
        assert expected["totalReferrals"] > 0
        for payload in ({"Authorization": f"Bearer {raw}"}, {"authorization": f"Bearer {raw}"},
                        {"authorization": raw}, {"token": raw}, {"headers": {"Authorization": f"Bearer {raw}"}}):
            async with connected(url, payload) as socket:
                await subscribe(socket, "1", TOTALS, {"id": str(ROOT)})
                message = await next_message(socket)
                assert message == {"id": "1", "type": "next", "payload": {"data": {"affiliateTotals": expected}}}


@pytest.mark.parametrize("payload,reason", [
    ({}, "Forbidden: missing bearer token"),
    ({"Authorization": "Bearer not.a.token"}, "Forbidden: malformed token"),
    ({"Authorization": "Basic dXNlcjpwdw=="}, "Forbidden: expected 'Authorization: Bearer <token>'"),
])
async def test_a_bad_token_closes_with_4403_and_the_reason(deployment: Deployment, payload: dict[str, Any],
                                                           reason: str) -> None:
    async with serving(deployment) as url:
        assert await refused(url, payload) == (4403, reason)


async def test_an_expired_or_foreign_token_and_a_suspended_affiliate_close_with_4403(deployment: Deployment) -> None:
    settings = deployment.settings
    other = settings.model_copy(update={"jwt_secret": SecretStr("another-secret-" + "y" * 40)})
    expired = mint_token(settings, "admin", ttl=timedelta(seconds=1))
    await asyncio.sleep(1.1)
    async with serving(deployment, jwt_leeway_seconds=0) as url:
        assert await refused(url, {"Authorization": f"Bearer {expired}"}) == (4403, "Forbidden: token expired")
        forged = mint_token(other, "admin")
        assert await refused(url, {"Authorization": f"Bearer {forged}"}) == (4403, "Forbidden: invalid signature")
        suspended = bearer(deployment, "affiliate", SUSPENDED)
        assert await refused(url, {"Authorization": suspended}) == (
            4403, "Forbidden: this affiliate account is suspended")


async def test_no_connection_init_closes_with_4408(deployment: Deployment) -> None:
    async with serving(deployment, ws_connection_init_timeout_seconds=0.5) as url:
        async with connected(url, None) as socket:
            started = time.monotonic()
            code, reason = await closed_with(socket)
            assert (code, reason) == (4408, "Connection initialisation timeout")
            assert 0.4 < time.monotonic() - started < 3


async def test_subscribe_before_the_acknowledgement_closes_with_4401(deployment: Deployment) -> None:
    async with serving(deployment) as url:
        async with connected(url, None) as socket:
            await subscribe(socket, "1", UPDATED)
            assert await closed_with(socket) == (4401, "Unauthorized")


async def test_the_connection_closes_when_the_token_expires(deployment: Deployment) -> None:
    short = mint_token(deployment.settings, "admin", ttl=timedelta(seconds=2))
    async with serving(deployment, jwt_leeway_seconds=0) as url:
        async with connected(url, {"Authorization": f"Bearer {short}"}) as socket:
            await subscribe(socket, "1", UPDATED)
            started = time.monotonic()
            code, reason = await closed_with(socket, seconds=10)
    assert (code, reason) == (4403, "Forbidden: token expired")
    assert time.monotonic() - started < 4


# --- events after an ETL commit, with the npm graphql-ws client --------------------------------

GRAPHQL_WS = ("graphql-ws@6.4.2", "ws@8.23.1", "graphql@16.11.0")
NODE_CLIENT = """
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
const [url, token, subscriptions] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const client = createClient({
  url, webSocketImpl: WebSocket, retryAttempts: 0,
  connectionParams: { Authorization: `Bearer ${token}` },
  on: {
    connected: () => out({ event: 'connected' }),
    ping: (received) => { if (received) out({ event: 'ping' }); },
    closed: (e) => out({ event: 'closed', code: e.code, reason: e.reason }),
  },
});
for (const [name, query, variables] of JSON.parse(subscriptions)) {
  client.subscribe({ query, variables }, {
    next: (result) => out({ name, result }),
    error: (error) => out({ name, error: Array.isArray(error) ? error : String(error.code ?? error) }),
    complete: () => out({ name, complete: true }),
  });
}
process.stdin.on('end', async () => { await client.dispose(); process.exit(0); });
process.stdin.resume();
"""


class NodeClient:
    """The npm graphql-ws client under Node, subscribed to ``subscriptions`` (name, query,
    variables); each line it prints is one event."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    async def next(self, seconds: float = 20) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        assert line, "the Node client ended"
        event = json.loads(line)
        self.events.append(event)
        return event

    async def until(self, wanted: Any, seconds: float = 20) -> list[dict[str, Any]]:
        """Events until one satisfies ``wanted`` (heartbeats included), that one last."""
        seen = []
        deadline = time.monotonic() + seconds
        while True:
            event = await self.next(max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if wanted(event):
                return seen


@asynccontextmanager
async def node_client(url: str, raw_token: str, subscriptions: list[tuple[str, str, dict[str, Any]]]
                      ) -> AsyncIterator[NodeClient]:
    modules = npm_packages(*GRAPHQL_WS)
    script = modules.parent / f"graphql-ws-client-{os.getpid()}.mjs"
    script.write_text(NODE_CLIENT)
    process = await asyncio.create_subprocess_exec(
        node_binary(), str(script), ws_url(url), raw_token, json.dumps(subscriptions),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield NodeClient(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
        script.unlink(missing_ok=True)


def etl_in_another_process(deployment: Deployment) -> None:
    """`fature etl run` in a process of its own: only NOTIFY (or the poll) tells the API."""
    env = {**os.environ, "FATURE_DATABASE_URL": deployment.robust_url,
           "FATURE_OPERATION_DATABASE_URL": deployment.operation_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "cli", "etl", "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


async def test_graphql_ws_client_gets_the_totals_pushed_after_an_etl_commit(writable: Deployment) -> None:
    admin = token(writable.settings, "admin")
    watched = {"child": CHILD, "root": ROOT, "untouched": UNTOUCHED}
    subscriptions = [(name, TOTALS, {"id": str(id)}) for name, id in watched.items()]
    subscriptions.append(("updated", UPDATED, {}))
    async with serving(writable, ws_ping_seconds=0.5) as url:
        before = {name: (await query(url, f"Bearer {admin}", QUERY, {"id": str(id)}))["data"]["affiliate"]
                  for name, id in watched.items()}
        async with node_client(url, admin, subscriptions) as client:
            first: dict[str, Any] = {}
            for event in await client.until(lambda e: len(first) == 3 or ("name" in e and first.setdefault(
                    e["name"], e["result"]) and len(first) == 3)):
                assert "error" not in event and event.get("event") != "closed", event
            assert {name: result["data"]["affiliateTotals"] for name, result in first.items()} == before
            # Heartbeats: the server pings, the client answers (else the next ping would close it).
            await client.until(lambda e: e.get("event") == "ping")
            await client.until(lambda e: e.get("event") == "ping")

            op = await Operation.open(writable.operation_url)
            try:
                await op.deposit(GRANDCHILD, "500.00", "2025-06-01 10:00Z")  # 341: level 1 of 326
            finally:
                await op.close()
            await asyncio.to_thread(etl_in_another_process, writable)
            run = (await rows(writable.robust_url, "SELECT id, source_as_of FROM etl.runs "
                              "WHERE status = 'success' ORDER BY id DESC LIMIT 1"))[0]
            after = {name: (await query(url, f"Bearer {admin}", QUERY, {"id": str(id)}))["data"]["affiliate"]
                     for name, id in watched.items()}
            assert after["untouched"] == before["untouched"]
            assert float(after["child"]["totalDeposits"]) == float(before["child"]["totalDeposits"]) + 500

            pushed: dict[str, Any] = {}
            events = await client.until(lambda e: "name" in e and pushed.setdefault(e["name"], e) is not None
                                        and {"child", "root", "updated"} <= pushed.keys())
            for event in events:
                assert "error" not in event and event.get("event") != "closed", event
            update = pushed["updated"]["result"]["data"]["dataUpdated"]
            assert update["runId"] == str(run["id"])
            assert datetime.fromisoformat(update["dataAsOf"]) == run["source_as_of"]
            assert pushed["child"]["result"]["data"]["affiliateTotals"] == after["child"]
            assert pushed["root"]["result"]["data"]["affiliateTotals"] == after["root"]
            # Nothing for the affiliate the run did not change (more heartbeats meanwhile).
            quiet = await client.until(lambda e: e.get("event") == "ping")
            quiet += await client.until(lambda e: e.get("event") == "ping")
            assert "untouched" not in pushed and not [e for e in quiet if "name" in e], quiet


# --- scoping: what the query answers, with gql's WebsocketsTransport ----------------------------


def gql_transport(url: str, authorization: str) -> WebsocketsTransport:
    return WebsocketsTransport(url=ws_url(url), init_payload={"Authorization": authorization},
                               subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])


async def first_result(url: str, authorization: str, document: str, variables: dict[str, Any]) -> Any:
    """The first ``next`` of a subscription as gql's ExecutionResult (data and errors)."""
    async with Client(transport=gql_transport(url, authorization)) as session:
        request = GraphQLRequest(document, variable_values=variables)
        try:
            async for result in session.subscribe(request, get_execution_result=True):
                return result
        except TransportQueryError as refused:  # gql raises on a result with errors
            return ExecutionResult(data=refused.data, errors=refused.errors)
    raise AssertionError("the subscription completed without a result")


async def test_an_affiliate_subscribes_to_what_it_may_query_and_nothing_more(deployment: Deployment) -> None:
    affiliate = bearer(deployment, "affiliate", AFFILIATE)
    async with serving(deployment) as url:
        # Itself, a downline (its earnings null), its upline (invisible: null), an unknown id.
        for id in (AFFILIATE, CHILD, ROOT, 999_999):
            answer = await query(url, affiliate, QUERY, {"id": str(id)})
            result = await first_result(url, affiliate, TOTALS, {"id": str(id)})
            assert result.errors is None and answer.get("errors") is None
            assert result.data == {"affiliateTotals": answer["data"]["affiliate"]}, id
            if id == CHILD:
                assert answer["data"]["affiliate"]["totalCpaEarned"] is None
            if id in (ROOT, 999_999):
                assert answer["data"]["affiliate"] is None
        # A malformed id: the query's error, with its code.
        answer = await query(url, affiliate, QUERY, {"id": "abc"})
        result = await first_result(url, affiliate, TOTALS, {"id": "abc"})
        assert [(e["message"], e["extensions"]["code"]) for e in result.errors] == [
            (e["message"], e["extensions"]["code"]) for e in answer["errors"]]
        assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_documents_pass_the_same_limits_as_over_http(deployment: Deployment) -> None:
    admin = bearer(deployment)
    deep = "subscription { affiliateTotals(id: \"300\") { upline { upline { upline { upline { upline { upline " \
           "{ upline { upline { upline { upline { id } } } } } } } } } } } }"
    costly = "subscription { affiliateTotals(id: \"300\") { referrals(first: 100) { nodes { referredAffiliate " \
             "{ referrals(first: 100) { nodes { level } } } } } } }"
    async with serving(deployment, max_query_cost=5000) as url:
        for document, code in ((deep, "QUERY_TOO_DEEP"), (costly, "QUERY_TOO_COSTLY"),
                               ("subscription { nope }", "GRAPHQL_VALIDATION_FAILED"),
                               ("{ me { id } }", "BAD_REQUEST")):
            http = await query(url, admin, document.replace("subscription { affiliateTotals", "{ affiliate"), {})
            async with connected(url, {"Authorization": admin}) as socket:
                await subscribe(socket, "1", document)
                message = await next_message(socket)
            codes = [e["extensions"]["code"] for e in message["payload"]] if message["type"] == "error" else \
                [e["extensions"]["code"] for e in message["payload"]["errors"]]
            assert codes == [code], (document, message)
            if code not in ("BAD_REQUEST", "GRAPHQL_VALIDATION_FAILED"):
                assert [e["extensions"]["code"] for e in http["errors"]] == [code]


# --- limits per token, heartbeats, metrics -----------------------------------------------------


async def test_connections_per_token_are_limited_across_two_app_instances_through_redis(
        deployment: Deployment) -> None:
    shared = {"ws_max_connections_per_token": 2, "redis_url": "redis://127.0.0.1:6379/0"}
    admin = bearer(deployment, subject=f"limits-{time.time_ns()}")
    other = bearer(deployment)
    async with serving(deployment, **shared) as first, serving(deployment, **shared) as second:
        async with connected(first, {"Authorization": admin}), connected(second, {"Authorization": admin}):
            for url in (first, second):
                assert await refused(url, {"Authorization": admin}) == (
                    4429, "Too many connections for this token (at most 2)")
            async with connected(first, {"Authorization": other}):  # another token has its own count
                pass
        # Closed connections give their slots back, in both processes.
        async with connected(second, {"Authorization": admin}), connected(first, {"Authorization": admin}):
            pass


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:9/0"])  # none, or one that never answers
async def test_connections_per_token_are_limited_in_one_process_without_redis(
        deployment: Deployment, redis_url: str | None) -> None:
    admin = bearer(deployment)
    async with serving(deployment, ws_max_connections_per_token=1, redis_url=redis_url) as url:
        async with connected(url, {"Authorization": admin}):
            assert await refused(url, {"Authorization": admin}) == (
                4429, "Too many connections for this token (at most 1)")
        async with connected(url, {"Authorization": admin}):
            pass


async def test_subscriptions_per_token_are_limited_and_given_back(deployment: Deployment) -> None:
    admin = bearer(deployment)
    async with serving(deployment, ws_max_subscriptions_per_token=2) as url:
        async with connected(url, {"Authorization": admin}) as one, connected(url, {"Authorization": admin}) as two:
            await subscribe(one, "a", UPDATED)
            await subscribe(two, "b", UPDATED)
            await subscribe(two, "c", UPDATED)
            assert await next_message(two) == {"id": "c", "type": "error", "payload": [{
                "message": "Too many subscriptions for this token (at most 2)",
                "extensions": {"code": "SUBSCRIPTION_LIMIT"}}]}
            await one.send(json.dumps({"id": "a", "type": "complete"}))
            await asyncio.sleep(0.2)
            await subscribe(two, "c", TOTALS, {"id": str(ROOT)})
            message = await next_message(two)
            assert message["id"] == "c" and message["type"] == "next", message


async def test_a_subscribe_counts_against_the_rate_limit(deployment: Deployment) -> None:
    admin = bearer(deployment)
    async with serving(deployment, rate_limit_enabled=True, rate_limit_burst="2/second") as url:
        async with connected(url, {"Authorization": admin}) as socket:
            for id in ("1", "2", "3"):
                await subscribe(socket, id, UPDATED)
            message = await next_message(socket)
    assert message["id"] == "3" and message["type"] == "error", message
    assert message["payload"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_the_server_pings_and_closes_a_client_that_never_answers(deployment: Deployment) -> None:
    admin = bearer(deployment)
    async with serving(deployment, ws_ping_seconds=0.3) as url:
        async with connected(url, {"Authorization": admin}) as socket:
            await socket.send(json.dumps({"type": "ping"}))  # the client's ping is answered
            assert await next_message(socket, skip_pings=False) == {"type": "pong"}
            assert await next_message(socket, skip_pings=False) == {"type": "ping"}
            started = time.monotonic()
            assert await closed_with(socket) == (1001, "No pong within 0.3 s")
            assert time.monotonic() - started < 2
        async with connected(url, {"Authorization": admin}) as socket:  # a client that answers stays
            for _ in range(4):
                assert await next_message(socket, skip_pings=False) == {"type": "ping"}
                await socket.send(json.dumps({"type": "pong"}))
            assert socket.close_code is None


async def test_metrics_count_open_connections_and_subscriptions(deployment: Deployment) -> None:
    admin = bearer(deployment)

    async def gauges(url: str) -> tuple[str, str]:
        async with httpx.AsyncClient() as client:
            text = (await client.get(url + "/metrics")).text
        lines = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines()
                 if line.startswith(("fature_websocket_connections ", "fature_subscriptions{"))}
        return lines.get("fature_websocket_connections", "?"), lines.get(
            'fature_subscriptions{field="affiliateTotals"}', "0.0")

    async with serving(deployment) as url:
        assert await gauges(url) == ("0.0", "0.0")
        async with connected(url, {"Authorization": admin}) as socket:
            await subscribe(socket, "1", TOTALS, {"id": str(ROOT)})
            await next_message(socket)
            assert await gauges(url) == ("1.0", "1.0")
        await asyncio.sleep(0.3)
        assert await gauges(url) == ("0.0", "0.0")


async def test_a_browser_page_must_come_from_an_allowed_origin(deployment: Deployment) -> None:
    admin = bearer(deployment)
    async with serving(deployment, cors_origins=["http://portal.example"]) as url:
        with pytest.raises(websockets.InvalidStatus) as refused_handshake:
            async with websockets.connect(ws_url(url), subprotocols=[PROTOCOL],  # type: ignore[list-item]
                                          origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused_handshake.value.response.status_code == 403
        async with websockets.connect(ws_url(url), subprotocols=[PROTOCOL],  # type: ignore[list-item]
                                      origin="http://portal.example") as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": admin}}))
            assert json.loads(await socket.recv())["type"] == "connection_ack"


async def test_subscriptions_follow_the_trusted_documents_rule(deployment: Deployment, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
        {"id": sha256_hex(TOTALS), "name": "Totals", "type": "subscription", "body": TOTALS}]}))
    affiliate, admin = bearer(deployment, "affiliate", AFFILIATE), bearer(deployment)
    async with serving(deployment, trusted_documents="affiliates", trusted_documents_path=manifest) as url:
        async with connected(url, {"Authorization": affiliate}) as socket:
            await subscribe(socket, "free", UPDATED)  # not in the manifest
            assert await next_message(socket) == {"id": "free", "type": "error", "payload": [{
                "message": "Only the registered operations (the trusted documents manifest) may run with this token",
                "extensions": {"code": "TRUSTED_DOCUMENT_REQUIRED"}}]}
            # The registered document, in full or by its hash alone (Apollo's persisted query link).
            await subscribe(socket, "full", TOTALS, {"id": str(AFFILIATE)})
            by_hash = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(TOTALS)}}
            await socket.send(json.dumps({"id": "hash", "type": "subscribe", "payload": {
                "variables": {"id": str(AFFILIATE)}, "extensions": by_hash}}))
            answers = {m["id"]: m for m in [await next_message(socket), await next_message(socket)]}
            assert answers["full"]["payload"] == answers["hash"]["payload"]
            assert answers["full"]["payload"]["data"]["affiliateTotals"]["totalReferrals"] > 0
        async with connected(url, {"Authorization": admin}) as socket:  # other roles: any document
            await subscribe(socket, "free", TOTALS.replace("rankCpa", "rankReferrals"), {"id": str(ROOT)})
            assert (await next_message(socket))["type"] == "next"


async def test_an_affiliate_suspended_while_connected_is_closed_after_the_commit(writable: Deployment) -> None:
    affiliate = bearer(writable, "affiliate", 302)
    async with serving(writable) as url:
        async with connected(url, {"Authorization": affiliate}) as socket:
            await subscribe(socket, "1", TOTALS, {"id": "302"})
            assert (await next_message(socket))["type"] == "next"
            op = await Operation.open(writable.operation_url)
            try:
                await op.set_status("cadastro", 302, "suspenso", "2025-06-02 10:00Z")
            finally:
                await op.close()
            await etl(writable.settings, writable.robust_url, writable.operation_url)
            assert await closed_with(socket) == (4403, "Forbidden: this affiliate account is suspended")
        assert await refused(url, {"Authorization": affiliate}) == (
            4403, "Forbidden: this affiliate account is suspended")
