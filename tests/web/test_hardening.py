"""Issue 13, the outside audit of the served API: body size (413 before the body is read),
malformed requests (a coded JSON error, never a 500 or a traceback), GraphiQL without data
and rate limited, /metrics trusting only the socket peer's loopback IP, logs without query
strings or bound values, and suspended affiliates refused (403 ACCOUNT_SUSPENDED)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import httpx
import pytest
from sqlalchemy import String, bindparam, text
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app import create_app
from cli import server_options
from db.engine import DatabaseUnavailable
from db.reader import sql
from db.snapshot import SnapshotReads
from resolvers.global_ids import global_id
from tests.support.clients import AFFILIATE, CHILD, Clients
from tests.support.deployment import Deployment, build_deployment, drop_deployment, rows, serve, token
from tests.support.live import uvicorn_serving
from web.access_log import JsonFormatter
from web.accounts import AccountStatus
from web.graphiql import DASHBOARD_QUERY, EXAMPLE_ID

SUSPENDED = 341  # 'suspenso' in the deployment's operation data (every 11th of the tree)
SECRET = "s3cr3t-" + uuid.uuid4().hex


class Records(logging.Handler):
    """Every record of the loggers it is attached to, whatever their propagation."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        """Each record as the standard formatter and the JSON formatter write it."""
        plain, structured = logging.Formatter(), JsonFormatter()
        out = []
        for record in self.records:
            out.append(plain.format(record))
            if record.exc_info:
                out.append(plain.formatException(record.exc_info))
            out.append(structured.format(record))
        return out

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@contextmanager
def recorded(*names: str) -> Iterator[Records]:
    handler = Records()
    loggers = [logging.getLogger(n) for n in names or ("fature", "uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def graphql_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}, body
    return body["errors"][0]


# 1. The request body limit ------------------------------------------------------------

LIMIT = 4096


class Streamed:
    """A chunked body (no Content-Length) that records how much of it was consumed."""

    def __init__(self, total: int, chunk: int = 1024) -> None:
        self.total, self.chunk, self.consumed = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        prefix = b'{"query": "{ syncStatus { dataAsOf } }", "padding": "'
        sent = 0
        while sent < self.total:
            piece = (prefix if sent == 0 else b"") + b"x" * self.chunk
            piece = piece[: self.total - sent]
            sent += len(piece)
            self.consumed = sent
            yield piece


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(deployment: Deployment) -> None:
    async with serve(deployment, max_body_bytes=LIMIT) as api:
        # Declared too large: refused up front, the body untouched (GraphQL and REST shapes).
        for path, shape in (("/graphql", "errors"), ("/api/v1/affiliates/300/validate-cpa", "error")):
            big = Streamed(30 * 1024 * 1024)
            response = await api.client.post(path, content=big, headers={
                "content-length": str(30 * 1024 * 1024), "content-type": "application/json"})
            assert response.status_code == 413, response.text
            assert big.consumed == 0
            body = response.json()
            code = body["errors"][0]["extensions"]["code"] if shape == "errors" else body["error"]["code"]
            assert code == "PAYLOAD_TOO_LARGE"
        # Chunked (no Content-Length): refused as soon as the bytes received pass the limit.
        for total in (LIMIT + 1, 30 * 1024 * 1024):
            streamed = Streamed(total)
            response = await api.client.post("/graphql", content=streamed,
                                             headers={"content-type": "application/json"})
            assert response.status_code == 413, response.text
            assert graphql_error(response)["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
            assert streamed.consumed <= LIMIT + 2 * streamed.chunk
        # Unauthenticated: still 413, before anything else.
        response = await api.client.post("/graphql", content=b"x" * (LIMIT + 1),
                                         headers={"authorization": "", "content-type": "application/json"})
        assert response.status_code == 413
        # At the limit: served.
        query = b'{"query": "{ syncStatus { dataAsOf } }"}'
        exact = query[:-1] + b" " * (LIMIT - len(query)) + b"}"
        assert len(exact) == LIMIT
        response = await api.client.post("/graphql", content=exact, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text


async def test_a_chunked_body_under_the_limit_is_served(deployment: Deployment) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"query": "{ syncStatus '
        yield b'{ dataAsOf } }"}'

    async with serve(deployment, max_body_bytes=LIMIT) as api:
        response = await api.client.post("/graphql", content=body(), headers={"content-type": "application/json"})
        assert response.status_code == 200 and response.json()["data"]["syncStatus"]["dataAsOf"]


# 2. Malformed requests ------------------------------------------------------------------

DEEP_VALUE: Any = "x"
for _ in range(1000):
    DEEP_VALUE = [DEEP_VALUE]
DEEP = "<1000 lists deep>"  # in a request: replaced by its JSON (no client encoder nests that deep)


def encoded(body: Any) -> bytes:
    return json.dumps(body).replace(f'"{DEEP}"', "[" * 1000 + '"x"' + "]" * 1000).encode()
ME = "{ me { id: affiliateId } }"
BY_ID = "query ById($id: ID!) { affiliate(id: $id) { id: affiliateId } }"

MALFORMED_JSON = [
    ("nested batch", [[{"query": ME}]]),
    ("non-object in a batch", [{"query": ME}, "junk"]),
    ("number in a batch", [{"query": ME}, 5]),
    ("empty batch", []),
    ("operationName a number", {"query": ME, "operationName": 5}),
    ("operationName a list", {"query": ME, "operationName": ["x"]}),
    ("operationName an object", {"query": BY_ID, "operationName": {"a": 1}, "variables": {"id": "1"}}),
    ("batched operationName a list", [{"query": ME, "operationName": ["x"]}]),
    ("query a number", {"query": 5}),
    ("query a list", {"query": [ME]}),
    ("variables a string", {"query": BY_ID, "variables": "x"}),
    ("variables a list", {"query": BY_ID, "variables": ["x"]}),
    ("extensions a list", {"query": ME, "extensions": [1]}),
    ("variables 1000 lists deep", {"query": BY_ID, "variables": {"id": DEEP}}),
    ("cached dashboard, variables 1000 deep", {"query": DASHBOARD_QUERY, "variables": {"id": "300", "x": DEEP}}),
    ("extensions 1000 deep", {"query": ME, "extensions": {"x": DEEP}}),
    ("batched variables 1000 deep", [{"query": BY_ID, "variables": {"id": DEEP}}]),
    ("a string", "{ me { id } }"),
    ("a number", 5),
    ("null", None),
    ("no query", {}),
    ("unknown operation", {"query": ME, "operationName": "Nope"}),
    ("two operations, no operationName", {"query": "query A { me { id } } query B { me { id } }"}),
    ("a named and an anonymous operation", {"query": "query A { me { id } } { me { id } }"}),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED_JSON], ids=[n for n, _ in MALFORMED_JSON])
async def test_malformed_json_requests_get_a_coded_400(secure: Clients, body: Any) -> None:
    with recorded() as log:
        response = await secure.api.client.post("/graphql", content=encoded(body),
                                                headers={**secure.headers("admin"), "content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = graphql_error(response)
    assert error["extensions"]["code"] in {"BAD_REQUEST", "GRAPHQL_PARSE_FAILED"}
    assert "Traceback" not in response.text and error["message"]
    assert not log.errors(), [r.getMessage() for r in log.errors()]


@pytest.mark.parametrize("content,content_type,status,code", [
    (b"{not json", "application/json", 400, "BAD_REQUEST"),
    (b"", "application/json", 400, "BAD_REQUEST"),
    (b"\xff\xfe", "application/json; charset=utf-8", 400, "BAD_REQUEST"),
    (b'{"query": "{ me { id } }"', "application/json", 400, "BAD_REQUEST"),
    (b"[" * 5000, "application/json", 400, "BAD_REQUEST"),
    (b"query=%7B+me+%7B+id+%7D+%7D", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b"{ me { id } }", "application/graphql", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"query": "{ me { id } }"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"query": "{ me { id } }"}', "multipart/form-data; boundary=x", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"query": "{ me { id } }"}', "", 415, "UNSUPPORTED_MEDIA_TYPE"),
])
async def test_bad_json_and_unknown_content_types(secure: Clients, content: bytes, content_type: str,
                                                  status: int, code: str) -> None:
    headers = {**secure.headers("admin"), "content-type": content_type}
    with recorded() as log:
        response = await secure.api.client.post("/graphql", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert graphql_error(response)["extensions"]["code"] == code
    assert not log.errors()


@pytest.mark.parametrize("params", [
    {"query": ME, "variables": "{not json"},
    {"query": BY_ID, "variables": "[1]"},
    {"query": BY_ID, "variables": "[" * 40 + "]" * 40},
    {"query": ME, "extensions": "5"},
    {"query": ME, "operationName": "Nope"},
    {"query": "query A { me { id } } query B { me { id } }"},
])
async def test_malformed_get_requests_get_a_coded_400(secure: Clients, params: dict[str, str]) -> None:
    with recorded() as log:
        response = await secure.api.client.get("/graphql", params=params, headers=secure.headers("admin"))
    assert response.status_code == 400, response.text
    assert graphql_error(response)["extensions"]["code"] == "BAD_REQUEST"
    assert not log.errors()


async def test_unknown_routes_and_methods_are_json_errors(secure: Clients) -> None:
    missing = await secure.api.client.get("/api/v1/nowhere", headers=secure.headers("admin"))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "No such endpoint: /api/v1/nowhere"}}
    wrong = await secure.api.client.delete("/api/v1/affiliates/300", headers=secure.headers("admin"))
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in wrong.headers["allow"]


async def test_well_formed_requests_still_work(secure: Clients) -> None:
    headers = secure.headers("affiliate", CHILD)
    chosen = await secure.api.client.post(
        "/graphql", json={"query": "query A { me { id } } query B { me { __typename } }", "operationName": "B"},
        headers=headers)
    assert chosen.status_code == 200 and chosen.json()["data"] == {"me": {"__typename": "Affiliate"}}
    one = await secure.api.client.post("/graphql", json={"query": ME, "operationName": None, "variables": None},
                                       headers=headers)
    assert one.status_code == 200 and one.json()["data"] == {"me": {"id": str(CHILD)}}
    nested = {"query": BY_ID, "variables": {"id": str(CHILD), "unused": [[[["a"]]]]}}
    batch = await secure.api.client.post("/graphql", json=[{"query": ME}, nested], headers=headers)
    assert batch.status_code == 200 and [b["data"] for b in batch.json()] == [
        {"me": {"id": str(CHILD)}}, {"affiliate": {"id": str(CHILD)}}]
    get = await secure.api.client.get("/graphql", params={"query": BY_ID, "variables": '{"id": "326"}'},
                                      headers=headers)
    assert get.status_code == 200 and get.json()["data"] == {"affiliate": {"id": "326"}}


def test_the_response_cache_key_is_bounded_and_never_raises() -> None:
    from web.response_cache import MAX_VARIABLES_DEPTH, ResponseCache, nested_deeper_than

    assert ResponseCache.key("d", {"x": DEEP_VALUE}, "admin", 1) is None  # answered uncached, no recursion
    assert ResponseCache.key("d", {"x": float("nan")}, "admin", 1) is not None
    assert ResponseCache.key("d", {1: "x"}, "admin", 1) is None  # type: ignore[dict-item]
    key = ResponseCache.key("d", {"x": "y" * 1_000_000}, "admin", 1)
    assert key is not None and len(key) < 80
    assert ResponseCache.key("d", {"b": 1, "a": 2}, "s", 1) == ResponseCache.key("d", {"a": 2, "b": 1}, "s", 1)
    shallow: Any = 1
    for _ in range(MAX_VARIABLES_DEPTH):
        shallow = [shallow]
    assert not nested_deeper_than(shallow, MAX_VARIABLES_DEPTH)
    assert nested_deeper_than([shallow], MAX_VARIABLES_DEPTH)
    assert nested_deeper_than({"a": {"b": [shallow]}}, MAX_VARIABLES_DEPTH)


def test_a_websocket_handshake_is_refused_cleanly(deployment: Deployment) -> None:
    # Only /graphql takes WebSockets (subscriptions, tests/web/test_subscriptions.py), and only in
    # the graphql-transport-ws protocol: anything else is refused before the handshake completes.
    app = create_app(deployment.settings, robust_url=deployment.robust_url, start_scheduler=False)
    client = TestClient(app)
    for path, subprotocols in (("/api/v1/affiliates/300", ["graphql-transport-ws"]),
                               ("/nowhere", ["graphql-transport-ws"]), ("/graphql", []),
                               ("/graphql", ["graphql-ws"]), ("/graphql", ["chat"])):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(path, subprotocols=subprotocols):
                pass
        assert refused.value.code == 1008, (path, subprotocols)


async def test_a_websocket_upgrade_over_http_is_answered_403(deployment: Deployment) -> None:
    # (uvicorn configures its loggers when it starts: records are taken from then on)
    async def upgrade(port: int, path: str, protocol: str | None) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        offered = f"Sec-WebSocket-Protocol: {protocol}\r\n".encode() if protocol else b""
        writer.write(f"GET {path} HTTP/1.1\r\n".encode() + b"Host: test\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n" + offered + b"\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return status

    async with uvicorn_serving(deployment.settings, deployment.robust_url) as url:
        with recorded() as log:
            port = int(url.rsplit(":", 1)[1])
            statuses = {(path, protocol): await upgrade(port, path, protocol) for path, protocol in (
                ("/graphql", None), ("/graphql", "graphql-ws"), ("/nowhere", "graphql-transport-ws"),
                ("/api/v1/affiliates/300", "graphql-transport-ws"), ("/graphql", "graphql-transport-ws"))}
            await asyncio.sleep(0.2)
    accepted = statuses.pop(("/graphql", "graphql-transport-ws"))
    assert accepted.startswith(b"HTTP/1.1 101"), accepted  # subscriptions: the protocol's handshake
    for attempt, status in statuses.items():
        assert status.startswith(b"HTTP/1.1 403"), (attempt, status)
    assert not log.errors(), [r.getMessage() for r in log.errors()]


@pytest.mark.parametrize("report,params,name", [
    ("validations", {"to": "9999-12-31"}, "to"),
    ("validations", {"to": "9999-12-31T23:00:00-05:00"}, "to"),
    ("validations", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
    ("validations", {"from": "0001-01-01"}, "from"),
    ("validations", {"level": "²"}, "level"),
    ("referrals", {"affiliate_id": "300", "level": "²"}, "level"),
    ("referrals", {"affiliate_id": "300", "level": "٣"}, "level"),
    ("referrals", {"affiliate_id": "300", "level": "1" * 5000}, "level"),
    ("referrals", {"affiliate_id": "³"}, "affiliate_id"),
    ("summaries", {"affiliate_id": "300", "to": "9999-12-31"}, "to"),
    ("summaries", {"affiliate_id": "300", "from": "0001-01-01"}, "from"),
])
async def test_export_parameters_out_of_range_are_bad_user_input(secure: Clients, report: str,
                                                                 params: dict[str, str], name: str) -> None:
    with recorded() as log:
        response = await secure.api.client.get(f"/api/v1/exports/{report}", params=params,
                                               headers=secure.headers("admin"))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT" and error["message"].startswith(name), error
    assert not log.errors()


# 3. GraphiQL without a token ------------------------------------------------------------

async def test_graphiql_holds_no_data_and_is_rate_limited(deployment: Deployment) -> None:
    async with serve(deployment, role=None, rate_limit_enabled=True, rate_limit_anonymous="3/minute") as api:
        with api.queries() as seen:
            page = await api.client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "query Dashboard($id: ID!)" in page.text
        assert seen == []  # no database read
        assert f'\\"id\\":\\"{EXAMPLE_ID}\\"' in page.text  # a placeholder, not an affiliate of the data
        top = (await rows(deployment.robust_url, "SELECT affiliate_id FROM affiliates WHERE status = 'active' "
                          "ORDER BY total_cpa_earned DESC LIMIT 1"))[0]["affiliate_id"]
        assert f'\\"id\\":\\"{top}\\"' not in page.text
        for _ in range(2):
            assert (await api.client.get("/graphql", headers={"accept": "text/html"})).status_code == 200
        # Its assets are open too, and not counted (static bytes: a page load is never cut short).
        asset = page.text.split('<script src="', 1)[1].split('"', 1)[0]
        for _ in range(5):
            assert asset.startswith("/graphiql/") and (await api.client.get(asset)).status_code == 200
        refused = await api.client.get("/graphql", headers={"accept": "*/*"})
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert graphql_error(refused)["extensions"]["code"] == "RATE_LIMITED"
        # Per IP: another client still loads it.
        transport = httpx.ASGITransport(app=api.app, client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
            assert (await other.get("/graphql", headers={"accept": "text/html"})).status_code == 200


# 4. /metrics from loopback: the peer's IP address only ----------------------------------

@pytest.mark.parametrize("host,status", [
    ("127.0.0.1", 200), ("127.8.9.10", 200), ("::1", 200), ("::ffff:127.0.0.1", 200),
    ("localhost", 401), ("testclient", 401), ("LOCALHOST", 401), ("ip6-localhost", 401),
    ("10.1.2.3", 401), ("::ffff:10.1.2.3", 401), ("0.0.0.0", 401), ("", 401), ("127.0.0.1.evil.com", 401),
])
async def test_metrics_open_to_loopback_ip_addresses_only(secure: Clients, host: str, status: int) -> None:
    transport = httpx.ASGITransport(app=secure.api.app, client=(host, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/metrics")).status_code == status


async def test_forwarded_headers_are_believed_from_trusted_proxies_only(deployment: Deployment) -> None:
    assert server_options(deployment.settings) == {"proxy_headers": False, "forwarded_allow_ips": [],
                                                   "access_log": False}
    # No trusted proxy (the default): a forwarded header changes nothing; the peer is loopback.
    async with uvicorn_serving(deployment.settings, deployment.robust_url) as url, httpx.AsyncClient() as client:
        for forwarded in ("10.9.9.9", "localhost", "127.0.0.1"):
            assert (await client.get(f"{url}/metrics", headers={"x-forwarded-for": forwarded})).status_code == 200
    # Behind a trusted proxy (here: loopback), the forwarded client is the client; a name is no IP.
    behind = deployment.settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]})
    assert server_options(behind)["forwarded_allow_ips"] == ["127.0.0.1"]
    async with uvicorn_serving(behind, deployment.robust_url) as url, httpx.AsyncClient() as client:
        for forwarded, status in (("localhost", 401), ("testclient", 401), ("10.9.9.9", 401), ("127.0.0.1", 200)):
            response = await client.get(f"{url}/metrics", headers={"x-forwarded-for": forwarded})
            assert response.status_code == status, forwarded


# 5. Logs: one access line, no query strings, no bound values ------------------------------

async def test_one_access_line_without_query_strings_or_tokens(deployment: Deployment,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    bearer = token(deployment.settings, "admin")
    async with uvicorn_serving(deployment.settings, deployment.robust_url) as url, httpx.AsyncClient() as client:
        # uvicorn configures its loggers when it starts (a handler on uvicorn.access would turn
        # its access line on: what it writes is read from the process's output instead)
        with recorded("fature", "uvicorn", "uvicorn.error") as log:
            post = await client.post(f"{url}/graphql", params={"access_token": bearer, "search": SECRET},
                                     json={"query": BY_ID, "variables": {"id": "300", "x": SECRET}},
                                     headers={"authorization": f"Bearer {bearer}"})
            get = await client.get(f"{url}/graphql", headers={"authorization": f"Bearer {bearer}"},
                                   params={"query": BY_ID, "variables": f'{{"id": "300", "x": "{SECRET}"}}'})
            await asyncio.sleep(0.2)  # uvicorn writes its access line after the response
    assert post.status_code == get.status_code == 200
    access = [r for r in log.records if r.name == "fature.access"]
    assert [(r.method, r.path) for r in access] == [("POST", "/graphql"), ("GET", "/graphql")]  # type: ignore[attr-defined]
    written = capfd.readouterr()
    assert '"POST /graphql' not in written.out + written.err  # uvicorn's own access line is off
    for line in [*log.texts(), written.out, written.err]:
        assert SECRET not in line and bearer not in line and "access_token" not in line


FAILING = [
    ("server-side cast", sql("SELECT CAST(CAST(:secret AS text) AS integer) AS n"), {"secret": SECRET}),
    ("client-side encoding", sql("SELECT CAST(:secret AS integer) AS n"), {"secret": SECRET}),
    ("engine path", text("SELECT CAST(:secret AS integer) AS n").bindparams(bindparam("secret", type_=String)),
     {"secret": SECRET}),
]


@pytest.mark.parametrize("query,params", [(q, p) for _, q, p in FAILING], ids=[n for n, _, _ in FAILING])
async def test_database_errors_are_logged_without_bound_values(deployment: Deployment, query: Any,
                                                               params: dict[str, Any]) -> None:
    async with serve(deployment) as api:
        database = api.app.state.api.database
        original = database.fetch
        in_snapshot = SnapshotReads.fetch

        async def failing(*args: Any, **kwargs: Any) -> Any:
            return await original(query, params)

        async def failing_in_snapshot(self: SnapshotReads, *args: Any, **kwargs: Any) -> Any:
            return await in_snapshot(self, query, params)

        async def failing_alone(self: SnapshotReads, *args: Any, **kwargs: Any) -> Any:
            return await in_snapshot(self, query, params)

        # Every read of the request fails with the secret bound, on any read path (statement
        # by statement, in the answer's snapshot: db/snapshot.py, or the compiled path's one
        # statement, whose failure the general path meets again).
        database.fetch = failing
        try:
            with recorded() as log, mock.patch.object(SnapshotReads, "fetch", failing_in_snapshot), \
                    mock.patch.object(SnapshotReads, "fetch_alone", failing_alone):
                for _ in range(2):  # the second is compiled (the first validated the document)
                    body = await api.graphql('{ affiliate(id: "300") { id name } }')
        finally:
            del database.fetch
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert log.errors(), "the failure is logged"
    assert any(r.exc_info for r in log.errors())
    texts = log.texts()
    assert any("Traceback" in t for t in texts)
    for line in texts:
        assert SECRET not in line, line


async def test_an_exception_escaping_the_app_is_a_json_500_logged_without_values(deployment: Deployment) -> None:
    async with serve(deployment) as api:
        database = api.app.state.api.database
        router = api.app.router

        async def broken(scope: Any, receive: Any, send: Any) -> None:
            await database.fetch(FAILING[1][1], FAILING[1][2])

        route: Any = router.routes[0]  # /graphql
        original = route.app
        route.app = broken
        try:
            with recorded() as log:
                response = await api.client.post("/graphql", json={"query": ME})
        finally:
            route.app = original
    assert response.status_code == 500 and graphql_error(response)["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "Traceback" not in response.text and SECRET not in response.text
    assert log.errors() and all(SECRET not in t for t in log.texts())


# 6. Suspended affiliates ---------------------------------------------------------------

async def test_a_suspended_affiliate_is_refused_everywhere(secure: Clients) -> None:
    status = (await rows(secure.api.app.state.api.robust_url,
                         "SELECT status FROM affiliates WHERE affiliate_id = $1", SUSPENDED))[0]["status"]
    assert status == "suspended"
    suspended = secure.headers("affiliate", SUSPENDED)
    client = secure.api.client
    for response in (
        await client.post("/graphql", json={"query": ME}, headers=suspended),
        await client.post("/graphql", json=[{"query": ME}], headers=suspended),
        await client.get("/graphql", params={"query": ME}, headers=suspended),
    ):
        assert response.status_code == 403
        assert graphql_error(response)["extensions"]["code"] == "ACCOUNT_SUSPENDED"
    for path in (f"/api/v1/affiliates/{SUSPENDED}", "/api/v1/exports/referrals?affiliate_id=341"):
        response = await client.get(path, headers=suspended)
        assert response.status_code == 403 and response.json()["error"]["code"] == "ACCOUNT_SUSPENDED"
    # Active and inactive affiliates, and staff, pass.
    for headers in (secure.headers("affiliate", CHILD), secure.headers("affiliate", AFFILIATE),
                    secure.headers("admin")):
        assert (await client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                  headers=headers)).status_code == 200


async def test_a_suspension_is_seen_within_the_cache_seconds_and_never_served_from_the_cache(
    robust_template: str,
) -> None:
    own = await build_deployment(robust_template)  # this test writes
    try:
        async with serve(own, role=None, cache_enabled=True, account_status_cache_seconds=0) as api:
            headers = {"authorization": f"Bearer {token(own.settings, 'affiliate', CHILD)}"}
            payload = {"query": DASHBOARD_QUERY, "variables": {"id": str(CHILD)}}
            for _ in range(2):  # a miss, then a hit of the response cache
                response = await api.client.post("/graphql", json=payload, headers=headers)
                assert response.status_code == 200 and response.json()["data"]["affiliate"]["id"] == global_id("Affiliate", CHILD)
            await rows(own.robust_url, "UPDATE affiliates SET status = 'suspended' WHERE affiliate_id = $1", CHILD)
            response = await api.client.post("/graphql", json=payload, headers=headers)
            assert response.status_code == 403
            assert graphql_error(response)["extensions"]["code"] == "ACCOUNT_SUSPENDED"
            await rows(own.robust_url, "UPDATE affiliates SET status = 'active' WHERE affiliate_id = $1", CHILD)
            assert (await api.client.post("/graphql", json=payload, headers=headers)).status_code == 200
    finally:
        await drop_deployment(own)


async def test_the_account_status_is_cached_for_its_seconds() -> None:
    class FakeDatabase:
        def __init__(self) -> None:
            self.status, self.reads = "active", 0

        async def fetch(self, query: Any, params: Any = None) -> list[Any]:
            self.reads += 1

            class Row:
                status = self.status

            return [Row()]

    now = [100.0]
    database = FakeDatabase()
    accounts = AccountStatus(database, 5, clock=lambda: now[0])  # type: ignore[arg-type]
    assert not await accounts.suspended(7) and not await accounts.suspended(7)
    assert database.reads == 1
    database.status = "suspended"
    now[0] += 4.9
    assert not await accounts.suspended(7)  # still within the cache seconds
    now[0] += 0.2
    assert await accounts.suspended(7) and database.reads == 2
    assert await accounts.suspended(8) and database.reads == 3  # per affiliate


async def test_a_database_outage_during_the_status_check_is_503(secure: Clients,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    class Down:
        async def fetch(self, query: Any, params: Any = None) -> Any:
            raise DatabaseUnavailable("the robust database is unavailable")

    accounts = secure.api.app.state.api.accounts
    monkeypatch.setattr(accounts, "database", Down())
    monkeypatch.setattr(accounts, "entries", {})
    with recorded() as log:
        graphql = await secure.api.client.post("/graphql", json={"query": ME},
                                               headers=secure.headers("affiliate", CHILD))
        rest = await secure.api.client.get(f"/api/v1/affiliates/{CHILD}", headers=secure.headers("affiliate", CHILD))
    assert graphql.status_code == 503 and graphql_error(graphql)["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert rest.status_code == 503 and rest.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert not log.errors()
    # Staff tokens do not depend on the check.
    admin = await secure.api.client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                         headers=secure.headers("admin"))
    assert admin.status_code == 200


@pytest.mark.parametrize("path", [
    "/api/v1/affiliates/99999999999999999999999",
    "/api/v1/affiliates/%C2%B2",
    "/api/v1/affiliates/-1",
    "/api/v1/affiliates/300/referrals?level=99999999999999999999",
    "/api/v1/affiliates/300/referrals?level=%C2%B2&first=-1",
    "/api/v1/affiliates/300/referrals?first=1e400&after=%00",
    "/api/v1/affiliates/300/referrals?status=%00",
    "/api/v1/affiliates/300/financial-summary?period=x",
    "/api/v1/affiliates/300/financial-summary?from=9999-12-31&to=0001-01-01",
    "/api/v1/affiliates/300/financial-summary?last=99999999999999999999999",
    "/api/v1/exports/nowhere",
    "/api/v1/exports/referrals?affiliate_id=300&format=%00",
    "/api/v1/exports/summaries?affiliate_id=300&from=2025-13-01",
    "/api/v1/nowhere",
    "/nowhere",
])
async def test_rest_garbage_is_a_4xx_json_error(secure: Clients, path: str) -> None:
    with recorded() as log:
        response = await secure.api.client.get(path, headers=secure.headers("admin"))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] and "Traceback" not in response.text
    assert not log.errors()


async def test_a_database_outage_escaping_the_app_is_a_json_503(deployment: Deployment) -> None:
    async with serve(deployment) as api:
        async def down(scope: Any, receive: Any, send: Any) -> None:
            raise DatabaseUnavailable("cannot connect to postgresql://fature:***@db/fature")

        route: Any = api.app.router.routes[0]  # /graphql
        original, route.app = route.app, down
        try:
            with recorded() as log:
                response = await api.client.post("/graphql", json={"query": ME})
        finally:
            route.app = original
    assert response.status_code == 503
    assert graphql_error(response)["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "fature:***@db" not in response.text and not log.errors()
