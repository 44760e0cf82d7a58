"""The /graphql endpoint: strawberry's ASGI view with Fature's context, the response cache,
batch caps, the data's as-of instant in ``extensions.asOf``, orjson, persisted operations
(web/persisted.py) and GraphiQL with the dashboard query preloaded (a placeholder id: the page
reads no data).

GraphQL over HTTP: the answer's media type is negotiated from ``Accept`` (web/media.py; 406
``NOT_ACCEPTABLE`` when neither JSON type is acceptable). A request error (the document does
not parse or validate, a variable cannot be coerced, a limit of the document is passed) has no
``data`` entry; with ``application/graphql-response+json`` it is answered with its 4xx status
(400, or the limit's), with ``application/json`` with 200. A batch is answered 200 with one
result per operation. A mutation over GET is 405 with ``Allow: POST``.

What does not make a GraphQL request is refused before execution with a JSON error in the
GraphQL errors shape and a code: a body that is not JSON, or not an object or an array of
objects; ``query``, ``variables``, ``operationName`` or ``extensions`` of the wrong type;
variables nested deeper than ``MAX_VARIABLES_DEPTH``; no query and no persisted hash (400
``BAD_REQUEST``); a content type other than application/json (415 ``UNSUPPORTED_MEDIA_TYPE``);
strawberry's own refusals (400 ``BAD_REQUEST``, 405 ``METHOD_NOT_ALLOWED``)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationDefinitionNode, OperationType
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from resolvers.prefetch import NotCovered
from schema import compiled
from schema.document_cache import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    too_large,
)
from schema.documents import parsed_document
from schema.errors import public_error
from web.access_log import operation_var
from web.errors import CODE_OF_STATUS, HTTP_STATUS, Rejected
from web.graphiql import PAGE_HEADERS, graphiql_page
from web.media import GRAPHQL_RESPONSE_JSON, content_type, negotiate
from web.middleware import send_rejection
from web.persisted import Resolved
from web.response_cache import MAX_VARIABLES_DEPTH, nested_deeper_than
from web.state import RequestContext, viewer_for


def _operations(
    query: str | None, max_tokens: int | None, max_document_bytes: int
) -> list[OperationDefinitionNode] | None:
    """The operations of the document, from the schema's shared parse (cached by digest,
    bounded, successes only: no parse of its own); None for a document that does not parse or
    is over the size limit (RequestLimits and the parse answer those)."""
    if not query or too_large(query, max_document_bytes):
        return None
    try:
        document = parsed_document(query, max_tokens).document
    except GraphQLError:
        return None
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def _operation_name(
    query: str | None, given: str | None, max_tokens: int | None = 2000,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> str | None:
    """The label of an operation without an operationName: its document's single named
    operation (unlabelled when it has none or several)."""
    if given or not query:
        return given
    operations = _operations(query, max_tokens, max_document_bytes)
    if operations and len(operations) == 1 and operations[0].name is not None:
        return operations[0].name.value
    return None


def check_operation_chosen(
    query: str | None, given: str | None, max_tokens: int | None, max_document_bytes: int
) -> None:
    """GraphQL over HTTP: a document with several operations needs ``operationName`` (it used
    to run the first one silently)."""
    if given is not None:
        return
    operations = _operations(query, max_tokens, max_document_bytes)
    if operations is not None and len(operations) > 1:
        names = ", ".join(o.name.value if o.name else "(anonymous)" for o in operations)
        raise Rejected(400, "BAD_REQUEST", f"The document holds {len(operations)} operations ({names}): "
                       "say which one to run in operationName")


def chosen_operation(
    query: str | None, given: str | None, max_tokens: int | None, max_document_bytes: int
) -> OperationDefinitionNode | None:
    """The operation a request runs (by ``operationName``, or the document's only one); None
    when the document does not parse or names no such operation (execution answers those)."""
    operations = _operations(query, max_tokens, max_document_bytes) or []
    if given is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == given), None)


def is_request_error(result: ExecutionResult) -> bool:
    """Errors raised before execution began (parse, validation, variable coercion, the limits
    of the document): no data, and no error is a field's (none has a path)."""
    errors = result.errors
    return result.data is None and bool(errors) and all(e.path is None for e in errors or ())


def request_error_status(errors: list[GraphQLError]) -> int:
    """The 4xx of a request error under application/graphql-response+json: its code's, or 400."""
    for error in errors:
        status = HTTP_STATUS.get(str((error.extensions or {}).get("code")), 400)
        if 400 <= status < 500:
            return status
    return 400


class FatureGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's ASGI view with Fature's context, the response cache, batch caps, the
    data's as-of instant in ``extensions.asOf``, orjson, and the preloaded GraphiQL."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # the middleware refuses WebSocket handshakes: no subscriptions
        if scope.get("state", {}).get("operation") == "graphiql":  # the middleware let it in without a token
            page = await self.render_graphql_ide(Request(scope, receive))
            await page(scope, receive, send)
            return
        media_type = negotiate(_accept(scope))
        if media_type is None:
            await send_rejection(scope, send, 406, "NOT_ACCEPTABLE",
                                 f"Accept allows neither {GRAPHQL_RESPONSE_JSON} nor application/json")
            return
        api = scope["app"].state.api
        if scope["method"] == "POST" and api.response_cache.enabled and api.settings.fast_execution:
            receive, answered = await self._answer_from_cache(scope, receive, send, media_type)
            if answered:
                return
        request = Request(scope, receive)
        request.state.media_type = media_type
        try:
            response = await self.run(request)
            response.headers["content-type"] = content_type(media_type)
            status = getattr(request.state, "request_error_status", None)
            if status is not None and response.status_code == 200:
                response.status_code = status
        except Rejected as r:
            await send_rejection(scope, send, r.status, r.code, r.message, r.headers)
            return
        except HTTPException as e:  # strawberry's refusals: the same JSON shape, with a code
            code = CODE_OF_STATUS.get(e.status_code, "BAD_REQUEST")
            await send_rejection(scope, send, e.status_code, code, e.reason)
            return
        await response(scope, receive, send)

    async def _answer_from_cache(
        self, scope: Scope, receive: Receive, send: Send, media_type: str
    ) -> tuple[Receive, bool]:
        """The short way of a cache hit: one operation POSTed as JSON whose answer the response
        cache holds, answered with the view's own steps (the body's checks, the persisted
        document, the operation's choice and label, the APQ registration) and the stored JSON
        spliced into the answer as the view would write it, without strawberry's request
        machinery or decoding the stored answer. Anything else (a batch, a refused body or
        hash, a cache miss) is the view's: this returns the body to read again and False,
        having answered nothing."""
        request = Request(scope, receive)
        sent_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if sent_type != "application/json":
            return receive, False
        body = await request.body()
        replay = _replay(body)
        try:
            data = request_data(orjson.loads(body), None)
        except (orjson.JSONDecodeError, Rejected):
            return replay, False
        request = Request(scope, replay)
        api = scope["app"].state.api
        settings = api.settings
        viewer = viewer_for(request)
        try:
            resolved: Resolved = await api.persisted.resolve(viewer, data.query, data.extensions)
            if resolved.query is None:
                return replay, False
            check_operation_chosen(resolved.query, data.operation_name, settings.max_tokens,
                                   settings.max_document_bytes)
        except Rejected:
            return replay, False
        context = RequestContext.build(api, viewer, request, None)
        raw = await context.cached_data(resolved.query, data.variables, data.operation_name)
        if raw is None:
            return replay, False
        label = api.metrics.operation_label(_operation_name(
            resolved.query, data.operation_name, settings.max_tokens, settings.max_document_bytes
        ))
        request.state.operation = label
        operation_var.set(label)
        request.state.cache = context.cache_status
        if resolved.register is not None:
            await api.persisted.register(resolved.register, resolved.query)
        # What process_result makes of a stored answer: its data, then asOf (orjson, compact).
        answer = b'{"data":' + raw.encode() + b',"extensions":{"asOf":' \
            + orjson.dumps(context.snapshot.as_of_text) + b"}}"
        response = Response(answer, status_code=200, media_type="application/json")
        response.headers["content-type"] = content_type(media_type)
        await response(scope, replay, send)
        return replay, True

    def should_render_graphql_ide(self, request: Any) -> bool:
        return False  # the middleware decides (a browser's GET without an operation)

    async def get_context(self, request: Any, response: Any) -> RequestContext:
        context = RequestContext.build(request.app.state.api, viewer_for(request), request, response)
        request.state.context = context
        return context

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Rejected(400, "BAD_REQUEST", f"Not valid JSON: {str(exc)[:120]}") from exc

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The operation (or batch) of a GET's parameters or a JSON body, each member checked."""
        if request.method == "GET":
            data: Any = dict(request.query_params)
            for name in ("variables", "extensions"):
                if name in data:
                    data[name] = self.parse_json(data[name]) if data[name] else None
        else:
            sent_type = (request.content_type or "").split(";", 1)[0].strip().lower()
            if sent_type != "application/json":
                raise Rejected(415, "UNSUPPORTED_MEDIA_TYPE",
                               "Send the operation as application/json (or a GET with query parameters)")
            data = self.parse_json(await request.get_body())
        if isinstance(data, dict):
            return request_data(data, None)
        if isinstance(data, list):
            if not data:
                raise Rejected(400, "BAD_REQUEST", "A batch must hold at least one operation")
            return [request_data(item, index) for index, item in enumerate(data)]
        raise Rejected(400, "BAD_REQUEST",
                       "The body must be a JSON object (an operation) or an array of them (a batch)")

    async def execute_operation(
        self, request: Request, request_adapter: Any, request_data: Any, context: RequestContext,
        root_value: Any, sub_response: Any,
    ) -> Any:
        members = request_data if isinstance(request_data, list) else [request_data]
        if len(members) <= context.settings.max_batch_operations:  # a larger batch is refused below
            for member in members:
                await self._resolve_document(request, member, context)
        if isinstance(request_data, list):
            cap = context.settings.max_batch_operations
            if len(request_data) > cap:
                raise Rejected(400, "BATCH_TOO_LARGE",
                               f"A batch may hold at most {cap} operations, got {len(request_data)}")
            request.state.operation = "batch"
            extra = len(request_data) - 1  # the middleware counted the request once
            if extra > 0:
                verdict = await context.api.rate_limiter.hit(request.state.rate_key, False, cost=extra)
                if not verdict.allowed:
                    context.api.metrics.rate_limited.labels("token").inc()
                    wait = verdict.retry_after
                    raise Rejected(429, "RATE_LIMITED", f"Too many requests; retry in {wait} s",
                                   {"retry-after": str(wait)})
        else:
            request.state.operation = context.api.metrics.operation_label(
                _operation_name(request_data.query, request_data.operation_name,
                                context.settings.max_tokens, context.settings.max_document_bytes)
            )
            operation_var.set(request.state.operation)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def _resolve_document(
        self, request: Request, member: GraphQLRequestData, context: RequestContext
    ) -> None:
        """The member's document from its persisted hash (web/persisted.py), with the hash to
        register it under once it ran; no document, or a mutation over GET, refused."""
        persisted = context.api.persisted
        resolved: Resolved = await persisted.resolve(context.viewer, member.query, member.extensions)
        member.query = resolved.query
        if resolved.register is not None:
            _registrations(request)[id(member)] = resolved.register
        if member.query is None:
            raise Rejected(400, "BAD_REQUEST", "No GraphQL query found in the request: send `query` "
                           "(or extensions.persistedQuery with a registered sha256Hash)")
        if request.method == "GET":
            operation = chosen_operation(member.query, member.operation_name, context.settings.max_tokens,
                                         context.settings.max_document_bytes)
            if operation is not None and operation.operation is OperationType.MUTATION:
                raise Rejected(405, "METHOD_NOT_ALLOWED", "Mutations are sent with POST, not GET",
                               {"allow": "POST"})

    async def execute_single(
        self, request: Request, request_adapter: Any, sub_response: Any, context: RequestContext,
        root_value: Any, request_data: Any,
    ) -> ExecutionResult:
        check_operation_chosen(request_data.query, request_data.operation_name,
                               context.settings.max_tokens, context.settings.max_document_bytes)
        plan = self._compiled_plan(request, context, request_data)

        async def compute() -> ExecutionResult:
            if plan is not None:
                try:
                    return await compiled.execute(plan, self.schema, context, request_data.variables)
                except (NotCovered, compiled.Fallback):
                    context.read_again()  # the general path reads in a snapshot of its own
                except Exception as exc:  # noqa: BLE001 - a failed read: answered as before
                    if context.reads.node_failed and not context.node.primary:
                        # A replica failed the read (down, a recovery conflict): this answer is
                        # dropped and computed again on another node (web/state.py).
                        return ExecutionResult(data=None, errors=[GraphQLError(str(exc), original_error=exc)])
                    # The database down, a timeout: the general path meets it again and answers
                    # it its way, so the answer's shape never depends on the path.
                    context.read_again()
            return await super(FatureGraphQL, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )

        result = await context.execute_cached(
            request_data.query, request_data.variables, request_data.operation_name, compute
        )
        request.state.cache = context.cache_status
        register = _registrations(request).get(id(request_data))
        if register is not None and not is_request_error(result):
            await context.api.persisted.register(register, request_data.query)
        return result

    def _compiled_plan(
        self, request: Request, context: RequestContext, data: GraphQLRequestData
    ) -> compiled.Plan | None:
        """The compiled plan of the request's operation (schema/compiled.py) when the general
        path would execute it (validated for this viewer, within the cost budget); None for a
        batch member, or a document the compiler does not cover."""
        settings = context.settings
        query = data.query
        batch = getattr(request.state, "operation", None) == "batch"
        if not settings.compiled_execution or not query or batch:
            return None
        if too_large(query, settings.max_document_bytes):
            return None
        try:
            entry = parsed_document(query, settings.max_tokens)
        except GraphQLError:
            return None
        plan = compiled.plan_for(self.schema, entry, data.operation_name)
        if plan is None:
            return None
        if not compiled.admitted(self.schema, entry, data.operation_name, context, data.variables):
            return None
        return plan

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Parse errors are answered before the schema's extensions run: code them here too.
        if result.errors:
            result.errors = [public_error(e) for e in result.errors]
        response = await super().process_result(request, result)
        if is_request_error(result):
            response.pop("data", None)  # execution never began: no data entry (GraphQL spec)
            single = getattr(request.state, "operation", None) != "batch"
            if single and getattr(request.state, "media_type", None) == GRAPHQL_RESPONSE_JSON:
                assert result.errors is not None
                request.state.request_error_status = request_error_status(result.errors)
        context: RequestContext | None = getattr(request.state, "context", None)
        if context is not None:
            extensions = response.get("extensions") or {}
            response["extensions"] = {**extensions, "asOf": context.snapshot.as_of_text}
        return response

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_page(), headers=PAGE_HEADERS)


_MEMBER_TYPES: tuple[tuple[str, type, str], ...] = (
    ("query", str, "a string"),
    ("variables", dict, "an object"),
    ("operationName", str, "a string"),
    ("extensions", dict, "an object"),
)


def request_data(item: Any, index: int | None) -> GraphQLRequestData:
    """One operation of a request, each member of the type GraphQL over HTTP says (or null)."""
    where = "the request" if index is None else f"operation {index} of the batch"
    if not isinstance(item, dict):
        raise Rejected(400, "BAD_REQUEST", f"{where[0].upper()}{where[1:]} is not a JSON object")
    for name, kind, described in _MEMBER_TYPES:
        value = item.get(name)
        if value is not None and not isinstance(value, kind):
            raise Rejected(400, "BAD_REQUEST", f"`{name}` of {where} must be {described} or null")
    for name in ("variables", "extensions"):
        if nested_deeper_than(item.get(name), MAX_VARIABLES_DEPTH):
            raise Rejected(400, "BAD_REQUEST",
                           f"`{name}` of {where} are nested deeper than {MAX_VARIABLES_DEPTH} levels")
    return GraphQLRequestData(query=item.get("query"), variables=item.get("variables"),
                              operation_name=item.get("operationName"), extensions=item.get("extensions"))


def _replay(body: bytes) -> Receive:
    """A ``receive`` that gives ``body`` again (the short way read it), then waits for the
    client to go away, as a request's ``receive`` does once its body is read."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more comes but a disconnect
        return {"type": "http.disconnect"}

    return receive


def _accept(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"accept":
            return str(value.decode("latin-1"))
    return None


def _registrations(request: Request) -> dict[int, str]:
    """The APQ hashes to register, by member (its id), once each ran without request errors."""
    registrations: dict[int, str] | None = getattr(request.state, "apq_registrations", None)
    if registrations is None:
        registrations = {}
        request.state.apq_registrations = registrations
    return registrations
