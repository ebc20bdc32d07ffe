"""The ops app at the ASGI level: access rules for clients a loopback test cannot be, and the
corners of routing; the same app over real HTTP is in test_ops_server.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypercorn.typing import HTTPScope

from service.observability.monitor import TaskMonitor
from service.observability.sampler import Sampler
from service.ops.app import OpsApp, is_loopback
from service.supervision import Supervisor
from tests.conftest import Events

REMOTE = "203.0.113.7"  # TEST-NET-3: never a real client


def ops_app(debug_token: str | None = None) -> OpsApp:
    supervisor = Supervisor([], on_give_up=lambda name: None)
    return OpsApp(supervisor, Sampler(TaskMonitor()), debug_token=debug_token)


def scope(
    path: str,
    *,
    client: str = "127.0.0.1",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> HTTPScope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 50_000),
        "server": ("127.0.0.1", 8080),
        "state": {},  # type: ignore[typeddict-item]
        "extensions": {},
    }


async def call(app: OpsApp, request: HTTPScope) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run the app as hypercorn would; the status, headers and body it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(request, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


async def test_a_remote_client_is_refused_when_no_token_is_configured() -> None:
    status, _, body = await call(ops_app(), scope("/debug/workers", client=REMOTE))
    assert status == 403
    assert b"loopback" in body


async def test_a_remote_client_needs_the_token_when_one_is_configured(events: Events) -> None:
    app = ops_app(debug_token="s3cret")
    status, headers, _ = await call(app, scope("/debug/workers", client=REMOTE))
    assert status == 401
    assert headers[b"www-authenticate"] == b"Bearer"
    right = {"Authorization": "Bearer s3cret"}
    status, _, body = await call(app, scope("/debug/workers", client=REMOTE, headers=right))
    assert (status, body) == (200, b"[]")
    assert events.named("ops.unauthorized") == []  # no credentials is not a wrong one


@pytest.mark.parametrize(
    "authorization", ["Bearer wrong", "Bearer", "Basic czNjcmV0", "bearer s3cret-and-more"]
)
async def test_wrong_credentials_are_401_and_logged_from_anywhere(
    events: Events, authorization: str
) -> None:
    app = ops_app(debug_token="s3cret")
    for client in ("127.0.0.1", REMOTE):
        request = scope("/debug/tasks", client=client, headers={"Authorization": authorization})
        status, headers, _ = await call(app, request)
        assert status == 401
        assert headers[b"www-authenticate"].startswith(b"Bearer")
    logged = events.named("ops.unauthorized")
    assert [entry["client"] for entry in logged] == ["127.0.0.1", REMOTE]
    assert all("s3cret" not in str(entry) for entry in logged)


async def test_the_token_scheme_is_case_insensitive() -> None:
    request = scope("/debug/workers", client=REMOTE, headers={"Authorization": "bearer s3cret"})
    status, _, _ = await call(ops_app(debug_token="s3cret"), request)
    assert status == 200


async def test_health_and_metrics_answer_anyone() -> None:
    app = ops_app()
    for path in ("/livez", "/readyz", "/metrics"):
        status, _, _ = await call(app, scope(path, client=REMOTE))
        assert status == 200, path


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 loopback as a dual-stack socket reports it
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("2001:db8::1", False),
        ("localhost", False),  # a name is not an address
        ("/run/ops.sock", False),
        (None, False),
    ],
)
def test_what_counts_as_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_only_get_is_served() -> None:
    status, headers, _ = await call(ops_app(), scope("/livez", method="POST"))
    assert status == 405
    assert headers[b"allow"] == b"GET"


async def test_an_unknown_path_is_404() -> None:
    for path in ("/", "/debug/nope", "/livez/", "/metrics.txt"):
        status, _, _ = await call(ops_app(), scope(path))
        assert status == 404, path


async def test_a_malformed_accept_header_on_metrics_is_400_not_a_crash() -> None:
    request = scope("/metrics", headers={"Accept": "text/plain; version=abc"})
    status, _, _ = await call(ops_app(), request)
    assert status == 400


async def test_metrics_speak_openmetrics_to_who_asks_for_it() -> None:
    request = scope("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    status, headers, body = await call(ops_app(), request)
    assert status == 200
    assert headers[b"content-type"].startswith(b"application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def test_the_lifespan_protocol_completes() -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await ops_app()({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
