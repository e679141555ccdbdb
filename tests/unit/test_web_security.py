"""The console's rules of who may act (nightfold/web/security.py), one by one."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from nightfold.web import security


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_and_bearer_authenticate_the_operator() -> None:
    assert security.authenticated(basic("operator", "pw"), "operator", "pw") == "operator"
    assert security.authenticated("Bearer pw", "operator", "pw") == "operator"
    assert security.authenticated("bearer  pw ", "operator", "pw") == "operator"


def test_wrong_missing_or_garbled_credentials_do_not() -> None:
    for header in (
        None,
        "",
        basic("operator", "nope"),
        basic("someone", "pw"),
        "Bearer nope",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Digest pw",
    ):
        assert security.authenticated(header, "operator", "pw") is None, header


def test_without_a_configured_password_nobody_acts() -> None:
    assert security.authenticated(basic("operator", ""), "operator", "") is None
    assert security.authenticated("Bearer ", "operator", "") is None


@given(cookie=st.text(min_size=1, max_size=40), password=st.text(min_size=1, max_size=20))
def test_a_token_is_valid_for_its_cookie_and_password_only(cookie: str, password: str) -> None:
    token = security.csrf_token(cookie, password)
    assert security.csrf_ok(cookie, token, password)
    assert not security.csrf_ok(cookie + "x", token, password)
    assert not security.csrf_ok(cookie, token, password + "x")
    assert not security.csrf_ok(cookie, None, password)
    assert not security.csrf_ok(None, token, password)
    assert not security.csrf_ok(cookie, token, "")


def test_browser_headers_tell_a_foreign_page() -> None:
    host = "127.0.0.1:8650"
    assert security.same_origin(host, None, None)[0]  # curl, scripts
    assert security.same_origin(host, "http://127.0.0.1:8650", "same-origin")[0]
    assert security.same_origin(host, None, "none")[0]  # typed in the address bar
    assert not security.same_origin(host, "http://localhost:9000", None)[0]
    assert not security.same_origin(host, "http://127.0.0.1:8650", "cross-site")[0]
    assert not security.same_origin(host, None, "same-site")[0]
    assert not security.same_origin(host, "null", None)[0]
