"""Persisted operations: Apollo's automatic persisted queries (APQ) and trusted documents.

**APQ** (``extensions.persistedQuery = {"version": 1, "sha256Hash": <hex>}``): a request with the
hash alone runs the document registered under it, or is answered ``PERSISTED_QUERY_NOT_FOUND``
(message ``PersistedQueryNotFound``, HTTP 200, as Apollo Server does: Apollo's link then sends
the hash with the query); a hash with a query is checked (sha256 of the query's UTF-8 must be
the hash, else 400 ``PERSISTED_QUERY_HASH_MISMATCH``), run, and registered once it parsed and
validated. The store is Redis when ``FATURE_REDIS_URL`` is set (every API process shares it),
else a least-recently-used map bounded by ``FATURE_APQ_MEMORY_BYTES`` of document text. A
document reached by its hash simply becomes the request's ``query``: it is validated for the
caller's role and cost-checked with the request's variables exactly like one sent in full.

**Trusted documents**: a manifest of registered operations (Apollo's
``apollo-persisted-query-manifest`` JSON: ``{"format", "version": 1, "operations": [{"id":
sha256 of body, "name", "type", "body"}]}``) at ``FATURE_TRUSTED_DOCUMENTS_PATH``, read, parsed,
validated and costed once at start (a bad manifest stops the start with a message naming the
operation). With ``FATURE_TRUSTED_DOCUMENTS=affiliates`` an affiliate token may run only the
manifest's operations (by hash, or by a full text equal to one of them), and APQ registers
nothing for it (403 ``TRUSTED_DOCUMENT_REQUIRED``); ``all`` applies that to every role; ``off``
(the default) only serves the manifest's documents by hash. The manifest's parsed, validated
and costed entries of the shared document cache (schema/documents.py) are held here and put
back whenever the cache's LRU let them go, so they are never parsed or validated again.

The manifest's format, its checks and its build from .graphql files (``fature documents
build``/``list``) are in web/manifest.py.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from aiocache import RedisCache
from graphql import GraphQLError, GraphQLSchema, OperationDefinitionNode, specified_rules

from db.settings import Settings
from resolvers.viewer import Role, Viewer
from schema.cost import cached_document_cost
from schema.document_cache import DocumentCache, document_bytes, too_large
from schema.documents import DOCUMENTS, ParsedDocument, held_bytes, parsed_document, validate
from schema.limits import limit_rules
from schema.root import schema as root_schema
from web.errors import Rejected
from web.manifest import ManifestError, ManifestOperation, read_manifest, sha256_hex

log = logging.getLogger("fature.api")

APQ_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# Apollo Server's headers on PERSISTED_QUERY_NOT_FOUND: no cache may keep the miss.
NOT_FOUND_HEADERS = {"cache-control": "private, no-cache, must-revalidate"}
Mode = Literal["off", "affiliates", "all"]


# --- The APQ store ----------------------------------------------------------------------

class ApqStore:
    """Documents by their sha256: Redis (shared by every process) or an in-memory LRU bounded
    in bytes of text. Redis down: lookups miss (the client sends the query again) and
    registrations are dropped, logged once, retried after ``cache_retry_seconds``."""

    def __init__(self, settings: Settings) -> None:
        self.ttl = settings.apq_ttl_seconds
        self.retry_seconds = settings.cache_retry_seconds
        self.memory: DocumentCache[str, str] = DocumentCache(settings.apq_memory_bytes)
        self.redis: RedisCache | None = None
        self._down_until = 0.0
        if settings.redis_url:
            url = urlsplit(settings.redis_url)
            self.redis = RedisCache(
                endpoint=url.hostname or "127.0.0.1", port=url.port or 6379,
                db=int(url.path.strip("/") or 0), password=url.password, namespace="fature:apq",
                timeout=settings.cache_timeout_seconds,
                create_connection_timeout=settings.cache_timeout_seconds,
            )

    async def get(self, sha256: str) -> str | None:
        if self.redis is None:
            return self.memory.get(sha256)
        if time.monotonic() < self._down_until:
            return None
        try:
            value = await self.redis.get(sha256)
        except Exception as exc:  # noqa: BLE001 - redis-py raises many kinds: a miss
            self._failed(exc)
            return None
        return value if isinstance(value, str) else None

    async def put(self, sha256: str, query: str) -> None:
        if self.redis is None:
            self.memory.put(sha256, query, document_bytes(query))
            return
        if time.monotonic() < self._down_until:
            return
        try:
            await self.redis.set(sha256, query, ttl=self.ttl)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if self._down_until == 0.0:
            log.warning("APQ store unavailable, hashes miss: %s", type(exc).__name__)
        self._down_until = time.monotonic() + self.retry_seconds

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass


# --- Resolution -------------------------------------------------------------------------

@dataclass(frozen=True)
class Resolved:
    """The document a request runs, and the hash to register it under once it ran cleanly
    (APQ's hash + query), if any."""

    query: str | None
    register: str | None = None


class PersistedOperations:
    """The manifest (checked and pre-warmed at start), the APQ store, and the rule deciding
    which document a request runs. Built once per process (``ApiState.persisted``)."""

    def __init__(self, settings: Settings, graphql_schema: GraphQLSchema | None = None) -> None:
        self.settings = settings
        self.mode: Mode = settings.trusted_documents
        self.apq_enabled = settings.apq_enabled
        self.store = ApqStore(settings)
        self.manifest: dict[str, ManifestOperation] = {}
        # Held so the shared cache's LRU never makes them parse or validate again.
        self._pinned: dict[str, tuple[ParsedDocument, int]] = {}
        if settings.trusted_documents_path is not None:
            for operation in read_manifest(settings.trusted_documents_path):
                self.manifest[operation.id] = operation
        elif self.mode != "off":
            raise ManifestError(f"FATURE_TRUSTED_DOCUMENTS={self.mode} needs FATURE_TRUSTED_DOCUMENTS_PATH")
        if self.manifest:
            self.prewarm(graphql_schema or root_schema._schema)

    def prewarm(self, graphql_schema: GraphQLSchema) -> None:
        """Parse, validate (with the limits of each role) and cost every manifest document once;
        a document that does not parse or validate stops the start, named."""
        settings = self.settings
        path = settings.trusted_documents_path
        for operation in self.manifest.values():
            where = f"trusted documents manifest {path}, operation {operation.name or operation.id}"
            if too_large(operation.body, settings.max_document_bytes):
                raise ManifestError(f"{where}: larger than FATURE_MAX_DOCUMENT_BYTES")
            try:
                entry = parsed_document(operation.body, settings.max_tokens)
            except GraphQLError as exc:
                raise ManifestError(f"{where}: {exc.message}") from exc
            # The rule sets requests validate with (schema/limits.py): introspection allowed
            # (admins, analysts) first, so a failure for affiliates alone keeps the entry.
            for introspection in (True, False):
                rules = tuple(specified_rules) + limit_rules(
                    settings.max_query_depth, settings.max_aliases, introspection
                )
                errors = validate(graphql_schema, entry, rules)
                if errors and introspection:
                    raise ManifestError(f"{where}: {errors[0].message}")
            names = [d.name.value for d in entry.document.definitions
                     if isinstance(d, OperationDefinitionNode) and d.name is not None]
            cached_document_cost(graphql_schema, entry, names[0] if len(names) == 1 else None, {},
                                 settings.max_page_size)
            self._pinned[operation.id] = (entry, held_bytes(operation.body, entry.document))

    def trusted_only(self, viewer: Viewer) -> bool:
        """Whether ``viewer`` may run manifest documents only."""
        return self.mode == "all" or (self.mode == "affiliates" and viewer.role is Role.AFFILIATE)

    def _manifest_document(self, sha256: str) -> str | None:
        operation = self.manifest.get(sha256)
        if operation is None:
            return None
        pinned = self._pinned.get(sha256)
        if pinned is not None and DOCUMENTS.get(pinned[0].key) is not pinned[0]:
            DOCUMENTS.put(pinned[0].key, pinned[0], pinned[1])  # evicted: put the warm entry back
        return operation.body

    async def resolve(self, viewer: Viewer, query: str | None, extensions: dict[str, Any] | None) -> Resolved:
        """The document the request runs (see the module's docstring), or ``Rejected``."""
        persisted = (extensions or {}).get("persistedQuery")
        trusted_only = self.trusted_only(viewer)
        if persisted is None:
            if trusted_only and query is not None:
                if self._manifest_document(sha256_hex(query)) is None:
                    raise _not_trusted()
            return Resolved(query)
        sha256 = _checked_hash(persisted)
        if query is None:
            document = self._manifest_document(sha256)
            if document is not None:
                return Resolved(document)
            if trusted_only:
                raise _not_trusted()
            if not self.apq_enabled:
                raise Rejected(200, "PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported",
                               NOT_FOUND_HEADERS)
            stored = await self.store.get(sha256)
            if stored is None:
                raise Rejected(200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound", NOT_FOUND_HEADERS)
            return Resolved(stored)
        if sha256_hex(query) != sha256:
            raise Rejected(400, "PERSISTED_QUERY_HASH_MISMATCH",
                           "extensions.persistedQuery.sha256Hash is not the sha256 of the query")
        if self._manifest_document(sha256) is not None:
            return Resolved(query)
        if trusted_only:
            raise _not_trusted()
        return Resolved(query, sha256 if self.apq_enabled else None)

    async def register(self, sha256: str, query: str) -> None:
        """Keep ``query`` under its hash (after it ran without request errors)."""
        if not too_large(query, self.settings.max_document_bytes):
            await self.store.put(sha256, query)

    async def close(self) -> None:
        await self.store.close()


def _checked_hash(persisted: Any) -> str:
    if not isinstance(persisted, dict):
        raise Rejected(400, "BAD_REQUEST", "extensions.persistedQuery must be an object")
    version = persisted.get("version")
    if version != APQ_VERSION or isinstance(version, bool):
        raise Rejected(400, "PERSISTED_QUERY_NOT_SUPPORTED",
                       f"Unsupported persisted query version {version!r}: this server speaks version 1")
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise Rejected(400, "BAD_REQUEST", "extensions.persistedQuery.sha256Hash must be 64 hex digits")
    return sha256.lower()


def _not_trusted() -> Rejected:
    return Rejected(403, "TRUSTED_DOCUMENT_REQUIRED",
                    "Only the registered operations (the trusted documents manifest) may run with this token")


async def resolve_document(api_state: Any, viewer: Viewer, query: str | None,
                           extensions: dict[str, Any] | None) -> str:
    """The document a GraphQL operation outside the HTTP view (a graphql-ws ``subscribe``
    message's payload) runs, under the same rules as /graphql.

    ``api_state`` is the app's ``ApiState`` (``app.state.api``), ``viewer`` the connection's
    verified viewer, ``query`` and ``extensions`` the payload's members (None when absent).
    Returns the text to execute: ``query`` itself, or the document registered under
    ``extensions.persistedQuery.sha256Hash`` (manifest first, then the APQ store). A hash with
    a query registers the query at once when it parses (the caller still validates and
    cost-checks it like any document). Raises ``web.errors.Rejected`` (``.code``,
    ``.message``; ``.status`` is HTTP's and may be ignored) when the document may not run:
    ``PERSISTED_QUERY_NOT_FOUND`` (send the query with the hash), ``PERSISTED_QUERY_HASH_MISMATCH``,
    ``PERSISTED_QUERY_NOT_SUPPORTED``, ``TRUSTED_DOCUMENT_REQUIRED`` (this token may run manifest
    documents only), ``BAD_REQUEST`` (no query and no hash, or a malformed persistedQuery)."""
    persisted: PersistedOperations = api_state.persisted
    resolved = await persisted.resolve(viewer, query, extensions)
    if resolved.query is None:
        raise Rejected(400, "BAD_REQUEST", "No GraphQL query found in the request")
    if resolved.register is not None:
        try:
            parsed_document(resolved.query, api_state.settings.max_tokens)
        except GraphQLError:
            return resolved.query  # not kept: the caller answers the syntax error
        await persisted.register(resolved.register, resolved.query)
    return resolved.query
