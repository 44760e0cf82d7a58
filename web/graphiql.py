"""GraphiQL: the page analysts open at ``GET /graphql`` from a browser, and its assets.

Everything the page loads is served by the app from ``web/static/graphiql/`` (GraphiQL 3.9.0,
React and ReactDOM 18.3.1, pinned and shipped with the package; where they come from and how
to update them: that folder's README.md): it works offline and names no other host. Each asset
lives at ``/graphiql/<sha256 prefix>/<name>``, so its bytes never change under one URL and it
is cached for a year; each tag carries the file's sha384 ``integrity``.

The page is one fixed set of bytes, built once: the dashboard query with a placeholder id, a
token bar and no data. The token an analyst pastes stays in the browser (localStorage) and is
sent as ``Authorization: Bearer ...`` (``fature-graphiql.js``); the server never puts one in
the page. Its Content-Security-Policy lets it run this server's scripts and talk to this
server only: a ``<meta>`` tag, since ``web/graphql.py`` answers the page as plain HTML
(``PAGE_HEADERS`` holds the same policy, with ``frame-ancestors``, for that response).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from web.errors import error_response
from web.middleware import ASSET_PREFIX

# The dashboard query, one text for GraphiQL's preloaded editor and the example trusted
# documents manifest (web/documents/manifest.json is built from the same file).
DOCUMENTS_DIR = Path(__file__).resolve().parent / "documents"
DASHBOARD_QUERY = (DOCUMENTS_DIR / "Dashboard.graphql").read_text(encoding="utf-8")

# The example variables' id: a placeholder to replace (the page is served without a token,
# so it shows no data and costs no database read).
EXAMPLE_ID = "AFFILIATE_ID"

ASSET_DIR = Path(__file__).parent / "static" / "graphiql"
# In load order: React before ReactDOM before GraphiQL (UMD globals), the page's own script last.
SCRIPTS = (
    "react-18.3.1.production.min.js",
    "react-dom-18.3.1.production.min.js",
    "graphiql-3.9.0.min.js",
    "fature-graphiql.js",
)
STYLESHEETS = ("graphiql-3.9.0.min.css", "fature-graphiql.css")
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Fonts are data: URLs inside GraphiQL's stylesheet; the fetcher talks to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self' data:; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": f"{CONTENT_SECURITY_POLICY}; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    """One file of the asset folder, as served: its bytes, type and hashes."""

    name: str
    body: bytes
    content_type: str
    digest: str  # the first 16 hex digits of its sha256: the version in its URL
    integrity: str  # sha384 in Subresource Integrity form

    @property
    def url(self) -> str:
        return f"{ASSET_PREFIX}{self.digest}/{self.name}"


def integrity_of(body: bytes) -> str:
    """The ``integrity`` attribute value (SRI) of ``body``: sha384, base64."""
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every servable file of the asset folder (scripts, stylesheets, licences), read once."""
    found: dict[str, Asset] = {}
    for path in sorted(ASSET_DIR.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        found[path.name] = Asset(
            name=path.name, body=body, content_type=content_type,
            digest=hashlib.sha256(body).hexdigest()[:16], integrity=integrity_of(body),
        )
    missing = [name for name in (*SCRIPTS, *STYLESHEETS) if name not in found]
    if missing:
        raise RuntimeError(f"GraphiQL's assets are missing from {ASSET_DIR}: {missing}")
    return found


@cache
def gzipped(name: str) -> bytes:
    """An asset's bytes gzipped, once per process (on its first request: ~0.1 s for GraphiQL)."""
    return gzip.compress(assets()[name].body, mtime=0)


def _json_for_html(value: object) -> str:
    """JSON safe inside a ``<script type="application/json">`` block (no ``</script>``)."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def graphiql_html(example_id: str) -> str:
    """The page: the token bar, GraphiQL's mount point, the preloaded query and variables
    (a data block, not a script: the policy runs no inline script) and the asset tags."""
    files = assets()
    defaults = {"query": DASHBOARD_QUERY, "variables": orjson.dumps({"id": example_id}).decode()}
    styles = "\n".join(
        f'<link rel="stylesheet" href="{files[name].url}" integrity="{files[name].integrity}">'
        for name in STYLESHEETS
    )
    scripts = "\n".join(
        f'<script src="{files[name].url}" integrity="{files[name].integrity}"></script>' for name in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{html.escape(CONTENT_SECURITY_POLICY, quote=False)}">
<meta name="referrer" content="no-referrer">
<title>Fature GraphiQL</title>
{styles}
</head>
<body>
<form id="fature-token-bar" autocomplete="off">
<label for="fature-token">Token</label>
<input id="fature-token" name="token" type="password" placeholder="paste a token" spellcheck="false">
<button type="submit">Use token</button>
<button type="button" id="fature-token-forget">Forget</button>
</form>
<p id="fature-hint" role="status">Loading GraphiQL...</p>
<div id="graphiql"></div>
<script type="application/json" id="fature-graphiql-defaults">{_json_for_html(defaults)}</script>
<noscript>GraphiQL needs JavaScript; the API itself is at POST /graphql.</noscript>
{scripts}
</body>
</html>
"""


@lru_cache(maxsize=1)
def graphiql_page() -> str:
    """The page every GraphiQL load gets: the same bytes, built once."""
    return graphiql_html(EXAMPLE_ID)


async def serve_asset(request: Request) -> Response:
    """One asset at its versioned URL, cached for a year (gzipped when the browser takes it);
    a name or version the folder does not hold is a 404."""
    asset = assets().get(request.path_params["name"])
    if asset is None or asset.digest != request.path_params["digest"]:
        return error_response("NOT_FOUND", f"No such GraphiQL asset: {request.url.path}")
    headers = {"cache-control": _IMMUTABLE, "x-content-type-options": "nosniff", "vary": "accept-encoding"}
    body = asset.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzipped(asset.name)
        headers["content-encoding"] = "gzip"
    if request.method == "HEAD":
        headers["content-length"] = str(len(body))
        return Response(b"", headers=headers, media_type=asset.content_type)
    return Response(body, headers=headers, media_type=asset.content_type)


# Mounted by app.py beside /graphql: the page's scripts, stylesheets and licences.
routes: list[BaseRoute] = [
    Route(ASSET_PREFIX + "{digest}/{name}", serve_asset, methods=["GET", "HEAD"]),
]
