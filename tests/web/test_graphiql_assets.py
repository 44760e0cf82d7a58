"""GraphiQL's page and its self-hosted assets (web/graphiql.py, web/static/graphiql/): no URL
outside the server, sha384 integrity recomputed from the files, versioned immutable URLs with
the right content types, licences kept, a fixed page with no data and no inline script."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.deployment import Api, Deployment, serve, token
from web.graphiql import ASSET_DIR, CONTENT_SECURITY_POLICY, EXAMPLE_ID, SCRIPTS, STYLESHEETS

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ("graphiql-3.9.0.min.js", "graphiql-3.9.0.min.css", "react-18.3.1.production.min.js",
          "react-dom-18.3.1.production.min.js")
LICENCES = {"graphiql-3.9.0.min.js": "LICENSE-graphiql.txt", "graphiql-3.9.0.min.css": "LICENSE-graphiql.txt",
            "react-18.3.1.production.min.js": "LICENSE-react.txt",
            "react-dom-18.3.1.production.min.js": "LICENSE-react-dom.txt"}
# Absolute URLs in the shipped bundles that a browser never fetches: XML namespaces, and links
# in error messages and comments. A bundle update that brings a new one fails here until
# someone has looked at it (a font, a source map or a CDN would be fetched: those may not ship).
TEXT_ONLY_URLS = {
    "graphiql-3.9.0.min.js": {
        "http://www.w3.org/2000/svg",  # the SVG namespace of its icons
        "http://",  # markdown-it's link normaliser prefixes bare links in descriptions: no host
        "https://codemirror.net/5/doc/manual.html#keymaps",  # an error message
        "https://commonmark.org/", "https://en.wikipedia.org/wiki/IEEE_floating_point",  # comments
        "https://github.com/graphql/graphiql",
        "https://github.com/graphql/graphiql/blob/master/examples/graphiql-cdn/index.html#L49",
        "https://github.com/jonschlinkert", "https://github.com/jonschlinkert/get-value",  # licence banners
        "https://github.com/jonschlinkert/is-primitive", "https://github.com/jonschlinkert/isobject",
        "https://github.com/jonschlinkert/set-value",
    },
    "react-dom-18.3.1.production.min.js": {
        "http://www.w3.org/1998/Math/MathML", "http://www.w3.org/1999/xhtml", "http://www.w3.org/1999/xlink",
        "http://www.w3.org/2000/svg", "http://www.w3.org/XML/1998/namespace",  # namespaces
        "https://reactjs.org/docs/error-decoder.html?invariant=",  # the text of its error messages
    },
}
ABSOLUTE_URL = re.compile(r"""https?://[^\s"'`)\\<>,;]*""")
PROTOCOL_RELATIVE = re.compile(r"""["'(]\s*//[A-Za-z0-9]""")


class Tags(HTMLParser):
    """Every tag of a page with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def graphiql(api: Api) -> str:
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    return page.text


async def test_the_page_names_no_url_outside_the_server_and_checks_every_asset(api: Api) -> None:
    tags = parse(await graphiql(api))
    urls = [(tag, name, value) for tag, attrs in tags.tags for name, value in attrs.items()
            if name in {"src", "href", "action", "formaction", "poster", "srcset", "data"} and value]
    assert urls, "the page loads its assets"
    for tag, name, value in urls:
        assert value.startswith("/graphiql/") or value.startswith("data:"), (tag, name, value)
        assert not value.startswith("//"), (tag, name, value)
    scripts = [attrs for tag, attrs in tags.tags if tag == "script" and attrs.get("src")]
    styles = [attrs for tag, attrs in tags.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert [s["src"].rsplit("/", 1)[-1] for s in scripts] == list(SCRIPTS)  # type: ignore[union-attr]
    assert [s["href"].rsplit("/", 1)[-1] for s in styles] == list(STYLESHEETS)  # type: ignore[union-attr]
    for attrs in [*scripts, *styles]:
        url = str(attrs.get("src") or attrs.get("href"))
        digest, name = url.removeprefix("/graphiql/").split("/")
        on_disk = (ASSET_DIR / name).read_bytes()  # recomputed here, not taken from the module
        assert attrs.get("integrity") == sri(on_disk), url
        assert digest == hashlib.sha256(on_disk).hexdigest()[:16], url
        served = await api.client.get(url, headers={"accept-encoding": "identity"})
        assert served.status_code == 200 and served.content == on_disk, url
        assert attrs.get("integrity") == sri(served.content)
    # No inline script runs (the policy allows none): the query rides in a JSON data block.
    inline = [(attrs, text) for attrs, text in tags.scripts if not attrs.get("src")]
    assert [attrs.get("type") for attrs, _ in inline] == ["application/json"]
    assert "query Dashboard($id: ID!)" in inline[0][1]


async def test_the_page_carries_a_strict_content_security_policy(api: Api) -> None:
    tags = parse(await graphiql(api))
    metas = [attrs for tag, attrs in tags.tags
             if tag == "meta" and str(attrs.get("http-equiv", "")).lower() == "content-security-policy"]
    assert [m["content"] for m in metas] == [CONTENT_SECURITY_POLICY]
    directives = {d.split()[0]: d.split()[1:] for d in CONTENT_SECURITY_POLICY.split("; ")}
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert directives["connect-src"] == ["'self'"]
    assert all("http" not in source and source != "*" for sources in directives.values() for source in sources)
    # The response carries the same policy as a header, with what a meta tag cannot say.
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.headers["content-security-policy"] == f"{CONTENT_SECURITY_POLICY}; frame-ancestors 'none'"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_the_page_is_the_same_bytes_for_everyone_and_holds_no_token(deployment: Deployment) -> None:
    pages = []
    for role in (None, "analyst", "admin"):
        async with serve(deployment, role=role) as api:
            pages.append(await graphiql(api))
    assert pages[0] == pages[1] == pages[2]
    assert "eyJ" not in pages[0] and "Bearer ey" not in pages[0]  # no JWT in it
    assert f'{{\\"id\\":\\"{EXAMPLE_ID}\\"}}' in pages[0]  # the placeholder variables


async def test_assets_are_versioned_immutable_and_typed(api: Api) -> None:
    tags = parse(await graphiql(api))
    urls = [str(attrs.get("src") or attrs.get("href")) for tag, attrs in tags.tags
            if tag in {"script", "link"} and (attrs.get("src") or str(attrs.get("href") or "").startswith("/graphiql/"))]
    for url in urls:
        plain = await api.client.get(url, headers={"accept-encoding": "identity"})
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert plain.headers["x-content-type-options"] == "nosniff"
        assert "content-encoding" not in plain.headers
        expected = "text/javascript" if url.endswith(".js") else "text/css"
        assert plain.headers["content-type"] == f"{expected}; charset=utf-8"
        zipped = await api.client.get(url, headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
        assert int(zipped.headers["content-length"]) < len(plain.content)  # the compressed bytes went out
        head = await api.client.head(url, headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(plain.content)
    licence = (ASSET_DIR / "LICENSE-graphiql.txt").read_bytes()
    digest = hashlib.sha256(licence).hexdigest()[:16]
    served = await api.client.get(f"/graphiql/{digest}/LICENSE-graphiql.txt")
    assert served.status_code == 200 and served.content == licence
    assert served.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("path", [
    "/graphiql/0000000000000000/graphiql-3.9.0.min.js",  # a version the folder does not hold
    "/graphiql/{react}/react-17.0.0.production.min.js",  # a file it does not hold
    "/graphiql/{react}/README.md",  # not an asset
    "/graphiql/{react}/..%2F..%2Fgraphiql.py",  # no way out of the folder
    "/graphiql/react-18.3.1.production.min.js",  # no version
])
async def test_unknown_assets_are_json_404s(api: Api, path: str) -> None:
    react = hashlib.sha256((ASSET_DIR / "react-18.3.1.production.min.js").read_bytes()).hexdigest()[:16]
    response = await api.client.get(path.format(react=react))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_assets_need_no_token(deployment: Deployment) -> None:
    async with serve(deployment, role=None) as api:
        url = [attrs["src"] for tag, attrs in parse(await graphiql(api)).tags if tag == "script" and attrs.get("src")][0]
        assert (await api.client.get(str(url))).status_code == 200
        assert (await api.client.post("/graphql", json={"query": "{ __typename }"})).status_code == 401
        analyst = token(deployment.settings, "analyst")
        answered = await api.client.post("/graphql", json={"query": "{ __typename }"},
                                         headers={"authorization": f"Bearer {analyst}"})
        assert answered.status_code == 200


@pytest.mark.parametrize("name", [*VENDOR, "fature-graphiql.js", "fature-graphiql.css"])
def test_shipped_files_fetch_nothing_from_outside(name: str) -> None:
    text = (ASSET_DIR / name).read_text()
    assert set(ABSOLUTE_URL.findall(text)) <= TEXT_ONLY_URLS.get(name, set())
    assert not PROTOCOL_RELATIVE.search(text)
    assert not re.search(r"sourceMappingURL=\s*(https?:)?//", text)  # a map, if named, is relative
    if name.endswith(".css"):
        assert "@import" not in text
        for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", text):
            assert url.startswith("data:") or not re.match(r"^(https?:)?//", url), url


def test_vendor_files_are_the_pinned_ones_with_their_licences() -> None:
    readme = (ASSET_DIR / "README.md").read_text()
    for name in VENDOR:
        body = (ASSET_DIR / name).read_bytes()
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), "")
        assert hashlib.sha256(body).hexdigest() in row, f"README.md's table does not give {name}'s sha256"
        licence = (ASSET_DIR / LICENCES[name]).read_text()
        assert "MIT License" in licence and "Permission is hereby granted" in licence
        assert LICENCES[name] in row
    assert (ASSET_DIR / "LICENSE-react.txt").read_text().startswith("MIT License\n\nCopyright (c) Facebook")


def test_the_package_ships_every_asset() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("web", [])
    for path in ASSET_DIR.iterdir():
        relative = str(path.relative_to(ROOT / "web"))
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
