"""Showing a URL that may carry a password (a database URL) without the password."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

__all__ = ["url_passwords", "without_password"]

_HIDDEN = "***"
# Query parameters that carry a secret in a database URL (`?password=...`).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_AUTHORITY_END = re.compile(r"[/?#]")


def _query_without_secrets(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in _SECRET_PARAMETERS for name, _ in pairs):
        return query
    shown = [(n, _HIDDEN if n.lower() in _SECRET_PARAMETERS else v) for n, v in pairs]
    return urlencode(shown, safe="*")


def without_password(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) shown as `***`;
    everything else as written.

    Text that is not `scheme://...` but holds an `@` is hidden whole: it may be a credential
    that lost its scheme.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _HIDDEN if "@" in url else url
    # The user part ends at the last "@": a password may hold "/", "?", "#" or "@" unescaped.
    userinfo, at, rest = rest.rpartition("@")
    shown = f"{userinfo.partition(':')[0]}:{_HIDDEN}@" if ":" in userinfo else userinfo + at
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    path, question, query = tail.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        tail = f"{path}?{_query_without_secrets(query)}{hash_}{fragment}"
    return f"{scheme}://{shown}{authority}{tail}"


def url_passwords(url: str) -> list[str]:
    """The passwords `url` carries (in its user part, as written and decoded, and in
    `password=` parameters): what `without_password` hides, for the redactor."""
    _, sep, rest = url.partition("://")
    if not sep:
        return []
    userinfo, at, rest = rest.rpartition("@")
    found: list[str] = []
    if at and ":" in userinfo:
        written = userinfo.partition(":")[2]
        found += [written, unquote(written)]
    end = _AUTHORITY_END.search(rest)
    tail = "" if end is None else rest[end.start() :]
    query = tail.partition("?")[2].partition("#")[0]
    found += [
        v for n, v in parse_qsl(query, keep_blank_values=True) if n.lower() in _SECRET_PARAMETERS
    ]
    return [p for p in found if p]
