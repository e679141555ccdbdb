"""Who may act, and proof that a request came from the console's own page.

Pure functions over header and cookie values, so each rule is tested alone:

- **Authentication**: an action needs the operator's password, sent as HTTP
  basic auth (``web_user`` / ``web_password``) or as ``Authorization: Bearer
  <web_password>``. Without a configured password the console is read-only.
- **Cross-site request forgery**: a browser attaches basic-auth credentials to
  any request for the console's origin, including one a foreign page makes it
  send. So an action also needs (1) a token in its form that only a page of
  the console can know: an HMAC, keyed by the password, of a random value the
  console keeps in a ``SameSite=Strict`` cookie (a signed double-submit
  cookie: a foreign page can neither read the cookie nor, cross-site, make
  the browser send it), and (2) no browser header saying it came from
  elsewhere (``Sec-Fetch-Site`` other than same-origin, or an ``Origin`` whose
  host is not the one the request was sent to).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

CSRF_COOKIE = "nf_csrf"
CSRF_FIELD = "csrf"
REALM = "nightfold console"


def authenticated(authorization: str | None, user: str, password: str) -> str | None:
    """The operator's name when ``authorization`` carries the right credentials,
    else None (always None when no password is configured)."""
    if not password or not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        ok = hmac.compare_digest(value.encode(), password.encode())
        return user if ok else None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    given_user, sep, given_password = decoded.partition(":")
    if not sep:
        return None
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return user if user_ok and password_ok else None


def new_csrf_cookie() -> str:
    return secrets.token_hex(16)


def _key(password: str) -> bytes:
    """The HMAC key: derived from the password, so every replica of the console
    (same password) accepts the others' tokens, and a new password voids old ones."""
    return hashlib.sha256(b"nightfold-console-csrf\0" + password.encode()).digest()


def csrf_token(cookie: str, password: str) -> str:
    return hmac.new(_key(password), cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(cookie: str | None, token: str | None, password: str) -> bool:
    if not cookie or not token or not password:
        return False
    return hmac.compare_digest(csrf_token(cookie, password), token)


def same_origin(
    host: str | None, origin: str | None, sec_fetch_site: str | None
) -> tuple[bool, str]:
    """Whether the browser's own headers allow the request, and why not."""
    if sec_fetch_site and sec_fetch_site.lower() not in ("same-origin", "none"):
        return False, f"sent from another site (Sec-Fetch-Site: {sec_fetch_site})"
    if origin and origin != "null":
        if not host or urlsplit(origin).netloc.lower() != host.lower():
            return False, f"sent from another origin ({origin})"
    elif origin == "null":
        return False, "sent from an opaque origin"
    return True, ""
