"""The media type of a GraphQL answer, negotiated from the request's ``Accept`` header as the
GraphQL-over-HTTP spec says.

- ``application/graphql-response+json``: request errors (parse, validation, variable coercion,
  the document's limits) are 4xx without a ``data`` entry; the status says what happened.
- ``application/json`` (the legacy type): 200 with ``errors`` for those, as clients before the
  spec expect; refusals at the edge (401, 403, 413, 429) keep their status.

No ``Accept`` (or an empty one) means ``application/json``. ``*/*`` and ``application/*`` prefer
``application/json``; when both types are named with the same weight,
``application/graphql-response+json`` wins (Apollo Client 4 sends
``application/graphql-response+json,application/json;q=0.9``). An ``Accept`` that allows
neither gets 406 (in ``application/json``, the one body every client can read). Every JSON
answer says ``charset=utf-8``.
"""

from __future__ import annotations

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
CONTENT_TYPES = {
    GRAPHQL_RESPONSE_JSON: f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8",
    JSON: f"{JSON}; charset=utf-8",
}
# The longest Accept header read: a longer one is judged on its first this many characters.
_MAX_ACCEPT = 2048


def _weight(params: list[str]) -> float:
    """The ``q`` of a media range (1 when absent; 0 when it is not a number in [0, 1])."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def negotiate(accept: str | None) -> str | None:
    """The media type to answer in (``GRAPHQL_RESPONSE_JSON`` or ``JSON``), or None when the
    header accepts neither (406)."""
    if accept is None or not accept.strip():
        return JSON
    # Per candidate: (specificity of the most specific matching range, its weight).
    best: dict[str, tuple[int, float]] = {}
    for part in accept[:_MAX_ACCEPT].split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        q = _weight(params)
        for candidate in (GRAPHQL_RESPONSE_JSON, JSON):
            if media == candidate:
                specificity = 3
            elif media == "application/*":
                specificity = 2
            elif media == "*/*":
                specificity = 1
            else:
                continue
            if specificity > best.get(candidate, (0, 0.0))[0]:
                best[candidate] = (specificity, q)
    graphql_response = best.get(GRAPHQL_RESPONSE_JSON, (0, 0.0))
    json_ = best.get(JSON, (0, 0.0))
    if graphql_response[1] <= 0 and json_[1] <= 0:
        return None
    if graphql_response[1] != json_[1]:
        return GRAPHQL_RESPONSE_JSON if graphql_response[1] > json_[1] else JSON
    # The same weight: the type named explicitly; both named (or neither): see the docstring.
    if graphql_response[0] == 3:
        return GRAPHQL_RESPONSE_JSON
    return JSON


def content_type(media_type: str | None) -> str:
    """The Content-Type header of an answer in ``media_type`` (None: 406's application/json)."""
    return CONTENT_TYPES.get(media_type or JSON, CONTENT_TYPES[JSON])
