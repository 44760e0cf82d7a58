"""The archive's files (etl/archive.py): a month's gzip CSV and its JSON manifest, written
durably (``.part``, fsync, rename, fsync of the directory) and read back to be checked.

Nothing here talks to the database; every read streams (one row in memory at a time).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from db.backup_files import fsync_path, sha256_of

CHUNK = 1 << 20

# Rows, and per transaction type its rows and exact sum of amounts (a decimal string).
Sums = tuple[int, dict[str, dict[str, object]]]


class FileMismatch(ValueError):
    """An archive file or manifest is not what was written; the message says which."""


def manifest_path(path: Path) -> Path:
    """``...-YYYY-MM.csv.gz`` -> ``...-YYYY-MM.manifest.json``."""
    return path.with_name(path.name.removesuffix(".csv.gz") + ".manifest.json")


@contextmanager
def gzip_writer(path: Path) -> Iterator[Callable[[bytes], int]]:
    """A writer of ``path`` through gzip: the bytes go to ``path.part``, which becomes ``path``
    only when the block ends without an error, fsynced, with its directory fsynced."""
    part = path.with_name(path.name + ".part")
    with part.open("wb") as raw:
        # mtime=0: the same rows give the same bytes (and the same sha256).
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            yield gz.write
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(part, path)
    fsync_path(path.parent)


def write_durably(path: Path, data: bytes) -> None:
    """``data`` into ``path`` the same way: ``.part``, fsync, rename, fsync of the directory."""
    part = path.with_name(path.name + ".part")
    with part.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
    fsync_path(path.parent)


def read_sums(path: Path) -> Sums:
    """Rows and, per transaction type, rows and the exact sum of amounts of an archive file."""
    counts: dict[str, int] = {}
    amounts: dict[str, Decimal] = {}
    with gzip.open(path, "rt", newline="", encoding="utf-8") as text:
        reader = csv.reader(text)
        header = next(reader)
        kind, amount = header.index("transaction_type"), header.index("amount")
        for record in reader:
            counts[record[kind]] = counts.get(record[kind], 0) + 1
            amounts[record[kind]] = amounts.get(record[kind], Decimal(0)) + Decimal(record[amount])
    return sum(counts.values()), {
        k: {"rows": counts[k], "amount": str(amounts[k])} for k in sorted(counts)}


def checked_manifest(path: Path, *, manifest_sha256: str, file_sha256: str) -> dict[str, Any]:
    """The manifest of ``path`` once the file is read back: the manifest's and the file's sha256
    are the ones recorded, and the file's rows and per-type sums the manifest's. FileMismatch
    (or OSError) otherwise."""
    text = manifest_path(path).read_bytes()
    if hashlib.sha256(text).hexdigest() != manifest_sha256:
        raise FileMismatch("the manifest is not the one written")
    manifest: dict[str, Any] = json.loads(text)
    if sha256_of(path) != manifest["sha256"] or manifest["sha256"] != file_sha256:
        raise FileMismatch("the file's sha256 differs from its manifest")
    if read_sums(path) != (manifest["rows"], manifest["sums"]):
        raise FileMismatch("the file's rows or sums differ from its manifest")
    return manifest


async def decompressed(path: Path) -> AsyncIterator[bytes]:
    """The CSV of an archive file, in chunks (COPY ... FROM its source)."""
    with gzip.open(path, "rb") as data:
        while chunk := data.read(CHUNK):
            yield chunk
