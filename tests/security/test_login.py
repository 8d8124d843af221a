"""Signing in and the hosts the UI answers to, over real HTTP (uvicorn) with a real
tokens file: cross-site forms are refused, guessing is slowed down, the cookie is
``Secure`` over HTTPS behind a trusted proxy only, and other sites' names get 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tracer.cli import build_parser
from tracer.collector import ServeSettings
from tracer.store import Store
from web import WebSettings, create_app

from .conftest import ADMIN_TOKEN, ORDERS_TOKEN, serve, write_tokens

EVIL = "http://evil.example"


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.toml")


@pytest.fixture
def locked(filled_store: Store, tokens: Path) -> Iterator[str]:
    """A UI with tokens, and its own failed-login counts (one app per test)."""
    with serve(create_app(filled_store, WebSettings(tokens_file=tokens))) as url:
        yield url


def _login(url: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/login",
        data={"token": token, "next": "/map"},
        headers=headers,
        follow_redirects=False,
    )


def test_login_from_another_site_is_refused(locked: str) -> None:
    # Before: a form on evil.example posted here and the cookie was set.
    for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/page"}, {"Origin": "null"}):
        response = _login(locked, ORDERS_TOKEN, **headers)
        assert response.status_code == 403, headers
        assert "set-cookie" not in response.headers
    # Another port on the same host is another site, too.
    port = int(locked.rsplit(":", 1)[1])
    assert _login(locked, ORDERS_TOKEN, Origin=f"http://127.0.0.1:{port + 1}").status_code == 403
    # The site's own form, or a client that is no browser (no Origin, no Referer), gets in.
    for headers in ({"Origin": locked}, {"Referer": f"{locked}/login?next=/"}, {}):
        response = _login(locked, ORDERS_TOKEN, **headers)
        assert response.status_code == 303, headers
        assert response.headers["location"] == "/map"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain HTTP


def test_logout_from_another_site_is_refused(locked: str) -> None:
    with httpx.Client(base_url=locked, follow_redirects=False) as client:
        assert _login(locked, ADMIN_TOKEN, Origin=locked).status_code == 303
        client.cookies.set("tracer_token", ADMIN_TOKEN)
        refused = client.post("/logout", headers={"Origin": EVIL})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        done = client.post("/logout", headers={"Origin": locked})
        assert done.status_code == 303 and 'tracer_token=""' in done.headers["set-cookie"]


def test_failed_logins_are_rate_limited_per_client(locked: str) -> None:
    # Before: 300 wrong tokens in 1.6 s were all answered.
    statuses = [_login(locked, f"guess-{n}", Origin=locked).status_code for n in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    held = _login(locked, ORDERS_TOKEN, Origin=locked)
    # Held back, even with the right token: the answer must not tell a guess was right.
    assert held.status_code == 429
    assert 1 <= int(held.headers["retry-after"]) <= 60
    assert "try again in" in held.text
    # Bearer tokens on the API are the same guesses.
    api = httpx.get(f"{locked}/api/traces", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert api.status_code == 429 and int(api.headers["retry-after"]) >= 1
    # The health checks don't check tokens and still answer.
    assert httpx.get(f"{locked}/healthz").status_code == 200


def test_bearer_guesses_are_rate_limited_too(locked: str) -> None:
    guesses = [
        httpx.get(f"{locked}/api/traces", headers={"Authorization": f"Bearer g{n}"}).status_code
        for n in range(11)
    ]
    assert guesses == [401] * 10 + [429]


def test_secure_cookie_when_a_trusted_proxy_says_https(filled_store: Store, tokens: Path) -> None:
    app = create_app(filled_store, WebSettings(tokens_file=tokens))
    https = {"X-Forwarded-Proto": "https"}
    with serve(app, forwarded_allow_ips="127.0.0.1") as url:
        origin = "https://" + url.split("://", 1)[1]
        cookie = _login(url, ORDERS_TOKEN, Origin=origin, **https).headers["set-cookie"]
        assert "Secure" in cookie
    # A proxy that is not trusted cannot claim HTTPS: no Secure.
    with serve(app, forwarded_allow_ips="10.9.9.9") as url:
        plain = _login(url, ORDERS_TOKEN, **https)
        assert plain.status_code == 303 and "Secure" not in plain.headers["set-cookie"]


def test_other_host_names_get_400(filled_store: Store) -> None:
    """Before: with no tokens file, a page on attacker.example resolving to 127.0.0.1
    (DNS rebinding) was served the UI."""
    with serve(create_app(filled_store)) as url:
        port = url.rsplit(":", 1)[1]
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.2", ""):
            response = httpx.get(f"{url}/api/traces", headers={"Host": host})
            assert response.status_code == 400, host
            assert "order-1" not in response.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert httpx.get(f"{url}/api/traces", headers={"Host": host}).status_code == 200
        # Probes reach a collector by whatever address it has.
        assert httpx.get(f"{url}/healthz", headers={"Host": "10.1.2.3:8700"}).status_code == 200
    allowed = WebSettings(allowed_hosts=["tracer.example", "*.tracer.internal"])
    with serve(create_app(filled_store, allowed)) as url:
        for host, status in (
            ("tracer.example", 200),
            ("ui.tracer.internal", 200),
            ("tracer.internal.evil", 400),
            ("127.0.0.1", 400),
        ):
            assert httpx.get(f"{url}/api/traces", headers={"Host": host}).status_code == status


def test_allowed_hosts_default_to_the_bound_address() -> None:
    import socket

    from tracer._service import default_allowed_hosts

    assert default_allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert default_allowed_hosts("10.0.0.7") == ["127.0.0.1", "localhost", "::1", "10.0.0.7"]
    every = default_allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in every and "0.0.0.0" not in every
    assert ServeSettings().allowed_hosts is None  # computed from --host at start
    args = build_parser().parse_args(
        ["serve", "--allowed-hosts", "a.example,b.example", "--forwarded-allow-ips", "10.0.0.1"]
    )
    assert (args.allowed_hosts, args.forwarded_allow_ips) == ("a.example,b.example", "10.0.0.1")
