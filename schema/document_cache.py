"""The per-document caches' one shape: least recently used entries keyed by a digest of the
document's text, bounded by the bytes of document text they stand for.

A cache keyed on the raw text keeps every distinct document alive (the audit of issue 13:
forty 5 MB documents held 260 MB for good). Here the key is a 16-byte BLAKE2b digest, each
entry is charged bytes (the size of the document it was computed from; for a parsed tree,
schema/limits.py adds an estimate of the tree), and the least recently used entries go when
the charges exceed ``max_bytes``. Callers store successes only: a document
that fails to parse or validate is computed again when it comes back (documents are
size-limited before they are parsed, so that stays cheap).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_CACHE_BYTES = 16 * 1024 * 1024  # settings.document_cache_bytes' default
DEFAULT_MAX_DOCUMENT_BYTES = 100_000  # settings.max_document_bytes' default


def document_digest(text: str) -> bytes:
    """The key of a document: its text's BLAKE2b digest (16 bytes). The last one is
    remembered: a request's text goes through several caches (label, plan, parse)."""
    global _last
    last = _last
    if last[0] is text:
        return last[1]
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    _last = (text, digest)
    return digest


_last: tuple[str, bytes] = ("", hashlib.blake2b(b"", digest_size=16).digest())


def document_bytes(text: str) -> int:
    """The document's size in UTF-8 bytes (what ``max_document_bytes`` counts)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def too_large(text: str, max_bytes: int) -> bool:
    """More than ``max_bytes`` of UTF-8, decided without encoding a huge text."""
    if len(text) > max_bytes:  # a character is at least one byte
        return True
    if len(text) * 4 <= max_bytes:  # and at most four
        return False
    return document_bytes(text) > max_bytes


class DocumentCache(Generic[K, V]):
    """An LRU map whose entries are charged bytes (of document text), at most ``max_bytes`` in
    all. An entry charged more than the whole bound is not kept."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        """The value (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` charged ``size`` bytes, evicting the least recently used as needed."""
        self.discard(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self.held_bytes += size
        self._evict()

    def discard(self, key: K, value: V | None = None) -> None:
        """Drop the entry of ``key`` (only if it holds ``value``, when given)."""
        entry = self._entries.get(key)
        if entry is not None and (value is None or entry[0] is value):
            del self._entries[key]
            self.held_bytes -= entry[1]

    def resize(self, max_bytes: int) -> None:
        """A new bound (the settings'); evicts at once when it shrinks."""
        if max_bytes != self.max_bytes:
            self.max_bytes = max_bytes
            self._evict()

    def clear(self) -> None:
        self._entries.clear()
        self.held_bytes = 0

    def _evict(self) -> None:
        while self.held_bytes > self.max_bytes and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            self.held_bytes -= size
