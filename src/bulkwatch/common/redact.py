"""Secrets out of every string that leaves the process, in one place.

Every configured secret (access tokens, webhook secrets and headers, Slack URLs, SMTP
passwords, apprise URLs, the API token) is registered here when the config is loaded, with
the forms it travels in: as written, base64 (an SMTP server echoing `AUTH LOGIN`), the SMTP
`AUTH PLAIN` string of user and password, and percent-encoded. `redact` replaces each of them
with `[REDACTED]`, wherever it stands in the text, whoever put it there (a platform echoing
the token in a page title, a header, a quoted field). The log renderer, the state store's
writes (stored errors, event bodies) and the CLI's output all go through it.

The secrets are matched by one regular expression built as a trie, so the cost per string
grows with the string, not with the number of secrets (10,000 stores, 10,000 tokens).
Secrets shorter than `MIN_LENGTH` characters are not redacted: they would match ordinary text.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = [
    "MIN_LENGTH",
    "REDACTED",
    "redact",
    "redact_bytes",
    "redacted_output",
    "register_secrets",
    "smtp_plain",
]

REDACTED = "[REDACTED]"
MIN_LENGTH = 6

# The secrets matched by `_pattern`, and those registered since, matched one by one until
# `_MAX_PENDING` of them wait; then a worker thread builds the next pattern (0.8 s at 10,000
# tokens) while the event loop goes on.
_MAX_PENDING = 256
_lock = threading.Lock()
_compiled: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None
_pending: tuple[str, ...] = ()
_building = False


def smtp_plain(user: str, password: str) -> str:
    """What SMTP `AUTH PLAIN` sends for this login (base64 of NUL, user, NUL, password)."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _forms(secret: str) -> set[str]:
    """The secret as written and percent-encoded; base64 too for what SMTP may echo."""
    return {secret, urllib.parse.quote(secret, safe=""), _b64(secret)}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching any of `words`, longest first, branching like a trie."""
    root: dict[str, dict] = {}  # type: ignore[type-arg]  # a trie: char -> subtrie; "" ends a word
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        chain = []
        while len(node) == 1 and "" not in node:  # a run without branches: no group, no depth
            ((char, node),) = node.items()
            chain.append(re.escape(char))
        alternatives = [re.escape(c) + emit(child) for c, child in sorted(node.items()) if c]
        if not alternatives:
            return "".join(chain)
        group = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
        if "" in node:
            group = f"(?:{group})?"
        return "".join(chain) + group

    return emit(root)


def register_secrets(secrets: Iterable[str], *, wait: bool = False) -> None:
    """Redact these secrets (and the forms they travel in) from now on; registering again
    adds to what is redacted (a reloaded config's old tokens stay redacted too). Many at
    once (a config) are compiled at once; a few (a rotated token) are matched one by one until
    enough wait, then compiled in a worker thread (`wait`: in this one)."""
    global _pending, _building  # noqa: PLW0603 - one registry for the whole process
    with _lock:
        known = _compiled.union(_pending)
        new = {f for s in secrets for f in _forms(s) if len(f) >= MIN_LENGTH} - known
        if not new:
            return
        # Longest first, so that a secret inside a longer one never leaves a piece of it.
        _pending = tuple(sorted({*_pending, *new}, key=len, reverse=True))
        if (len(_pending) <= _MAX_PENDING and _pattern is not None) or _building:
            return
        _building = True
    if len(new) > _MAX_PENDING or wait or _pattern is None:
        _build()
    else:
        threading.Thread(target=_build, name="bulkwatch-redact", daemon=True).start()


def _build() -> None:
    global _compiled, _pattern, _pending, _building  # noqa: PLW0603
    while True:
        with _lock:
            words = _compiled.union(_pending)
        pattern = re.compile(_trie_regex(words))
        with _lock:
            _compiled, _pattern = frozenset(words), pattern
            _pending = tuple(w for w in _pending if w not in words)
            if len(_pending) <= _MAX_PENDING:
                _building = False
                return


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `[REDACTED]`."""
    pattern, pending = _pattern, _pending
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for secret in pending:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_bytes(data: bytes) -> bytes:
    """`redact` for UTF-8 bytes (an event body); the same bytes when nothing matched."""
    if (_pattern is None and not _pending) or not isinstance(data, bytes):
        return data  # not bytes: the store refuses it (NOT NULL, a caller's bug) as before
    text = data.decode("utf-8", "surrogateescape")
    redacted = redact(text)
    return data if redacted == text else redacted.encode("utf-8", "surrogateescape")


class _RedactingStream(io.TextIOBase):
    """A text stream that redacts what is written to it before passing it on."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Redact everything written to `sys.stdout` and `sys.stderr` within the block (a CLI
    command's output and its log lines)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(out), _RedactingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
