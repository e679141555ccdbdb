"""URL helpers shared by every seam: parsing and masking secrets."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and errors."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def scheme_of(url: str) -> str:
    """The lower-case scheme of a URL, without a ``+driver`` suffix."""
    return urlsplit(url).scheme.split("+", 1)[0].lower()


def with_query(url: str, **options: str) -> str:
    """``url`` with query options added or replaced (a queue, a table prefix, ``ssl_ca``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | options
    return urlunsplit(parts._replace(query=urlencode(query)))
