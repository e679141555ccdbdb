"""URL helpers shared by every seam: parsing, and the one masker of secrets.

:func:`mask_url` is the only place that hides passwords. Error messages of
every seam, the CLI's last-resort error line and every log line go through it,
so a fix to masking is made once. It is unanchored (it masks every URL in free
text, not only a string that starts with one) and it takes the password to run
up to the *last* ``@`` of the URL, so a password containing ``@``, ``:``, ``/``
or ``%`` is hidden whole rather than cut at its first ``@``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
"""What a password is replaced by."""

# "scheme://user:" -- where a password may start. The user name may not hold
# whitespace, ":", "@" or "/" (RFC 3986 wants "@" percent-encoded there).
_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]*:")
_TOKEN = re.compile(r"\S+")


def mask_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced
    by ``***``: safe for logs and error messages.

    ``text`` may be one URL or free text holding any number of them. A password
    ends at the last ``@`` of its whitespace-delimited token; a password that
    itself holds whitespace (not a valid URL, but SQLAlchemy takes it) runs on to
    the last ``@`` of the first later token that has one, on the same line, unless
    that token starts a URL of its own. Erring that way masks a little too much
    of a line like ``hbase://h:9090 ... user@example.org``, never too little.
    """
    if "@" not in text:
        return text
    out: list[str] = []
    pos = 0
    while (found := _CREDENTIALS.search(text, pos)) is not None:
        start = found.end()
        at = _password_end(text, start)
        if at is None:
            out.append(text[pos:start])
            pos = start
            continue
        out.append(text[pos:start] + MASK)
        pos = at
    out.append(text[pos:])
    return "".join(out)


def _password_end(text: str, start: int) -> int | None:
    """Where the ``@`` closing the password that begins at ``start`` is, if any."""
    line_end = text.find("\n", start)
    line = text[start : len(text) if line_end < 0 else line_end]
    fallback: int | None = None
    for token in _TOKEN.finditer(line):
        word = token.group()
        if token.start() > 0 and _CREDENTIALS.match(word):
            return fallback
        at = word.rfind("@")
        if at < 0:
            continue
        if at < len(word) - 1:
            return start + token.start() + at
        # an "@" ending its token is followed by no host: the password may go on
        fallback = start + token.start() + at
    return fallback


def scheme_of(url: str) -> str:
    """The lower-case scheme of a URL, without a ``+driver`` suffix."""
    return urlsplit(url).scheme.split("+", 1)[0].lower()


def with_query(url: str, **options: str) -> str:
    """``url`` with query options added or replaced (a queue, a table prefix, ``ssl_ca``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | options
    return urlunsplit(parts._replace(query=urlencode(query)))
