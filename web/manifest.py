"""The trusted documents manifest: Apollo's ``apollo-persisted-query-manifest`` JSON
(``{"format", "version": 1, "operations": [{"id": sha256 of body, "name", "type", "body"}]}``),
read and checked (``read_manifest``) and built from .graphql files (``build_manifest``, behind
``fature documents build``). web/persisted.py serves its operations."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

MANIFEST_FORMAT = "apollo-persisted-query-manifest"


def sha256_hex(text: str) -> str:
    """The id of a document: sha256 of its UTF-8, in lowercase hex (Apollo's link and manifest)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the operation."""


@dataclass(frozen=True)
class ManifestOperation:
    id: str
    name: str
    type: str
    body: str


def read_manifest(path: Path) -> list[ManifestOperation]:
    """The operations of a manifest file, each checked for shape and for its id being the
    sha256 of its body."""
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ManifestError(f"trusted documents manifest {path}: cannot read it ({exc.strerror})") from exc
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"trusted documents manifest {path}: not JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or raw.get("version") != 1:
        raise ManifestError(f"trusted documents manifest {path}: expected "
                            f'{{"format": "{MANIFEST_FORMAT}", "version": 1, "operations": [...]}}')
    entries = raw.get("operations")
    if not isinstance(entries, list):
        raise ManifestError(f"trusted documents manifest {path}: `operations` must be an array")
    operations: list[ManifestOperation] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"trusted documents manifest {path}, operation {index} ({name or 'unnamed'})"
        fields = ("id", "type", "body")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in fields):
            raise ManifestError(f"{where}: needs string `id`, `type` and `body`")
        if entry["type"] not in ("query", "mutation", "subscription"):
            raise ManifestError(f"{where}: unknown type {entry['type']!r}")
        if sha256_hex(entry["body"]) != entry["id"].lower():
            raise ManifestError(f"{where}: `id` is not the sha256 of `body`")
        operations.append(ManifestOperation(entry["id"].lower(), str(name or ""), entry["type"],
                                            entry["body"]))
    return operations


def _fragments_used(node: Any) -> set[str]:
    names: set[str] = set()

    class Spreads(Visitor):
        def enter_fragment_spread(self, spread: FragmentSpreadNode, *_: Any) -> None:
            names.add(spread.name.value)

    visit(node, Spreads())
    return names


def manifest_operations(documents: Iterable[tuple[str, str]]) -> list[ManifestOperation]:
    """One manifest operation per named operation of ``documents`` ((source name, text) pairs):
    the operation and the fragments it uses (from any of the documents), printed the way
    graphql-js prints them (what Apollo's link hashes)."""
    operations: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for source, text in documents:
        try:
            document = parse(text)
        except GraphQLError as exc:
            raise ManifestError(f"{source}: {exc.message}") from exc
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                if definition.name is None:
                    raise ManifestError(f"{source}: every operation needs a name (an anonymous one)")
                operations.append(definition)
            elif isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = definition
    seen: set[str] = set()
    result: list[ManifestOperation] = []
    for operation in operations:
        assert operation.name is not None
        name = operation.name.value
        if name in seen:
            raise ManifestError(f"two operations are named {name}")
        seen.add(name)
        needed: list[FragmentDefinitionNode] = []
        pending = sorted(_fragments_used(operation))
        while pending:
            fragment_name = pending.pop(0)
            if fragment_name in {f.name.value for f in needed}:
                continue
            if fragment_name not in fragments:
                raise ManifestError(f"operation {name}: unknown fragment {fragment_name}")
            needed.append(fragments[fragment_name])
            pending += sorted(_fragments_used(fragments[fragment_name]))
        body = print_ast(DocumentNode(definitions=(operation, *needed)))
        result.append(ManifestOperation(sha256_hex(body), name, operation.operation.value, body))
    return result


def build_manifest(paths: Iterable[Path]) -> dict[str, Any]:
    """The manifest JSON (a dict) of the operations in ``paths``: .graphql/.gql files, or
    folders searched for them."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".graphql", ".gql") and p.is_file())
        else:
            files.append(path)
    if not files:
        raise ManifestError("no .graphql documents found")
    operations = manifest_operations((str(f), f.read_text(encoding="utf-8")) for f in files)
    return {
        "format": MANIFEST_FORMAT, "version": 1,
        "operations": [{"id": o.id, "name": o.name, "type": o.type, "body": o.body} for o in operations],
    }
