"""The ops HTTP app: health, metrics and the debug views, as a plain ASGI callable.

A few GET routes need no framework: routing is a dict, and every response is built in one
synchronous step on the event loop, so what a view shows is one consistent moment of the
service. Anything malformed gets a 4xx from here (or from hypercorn, for broken HTTP), never
an exception.

Who may read `/debug/*` (stacks, worker errors: what an attacker would like to see):
loopback clients, and anyone sending `Authorization: Bearer <SERVICE_OPS_DEBUG_TOKEN>`. A
request that sends credentials must send the right ones, from anywhere: a wrong token is 401
and logged. Without a configured token, other clients get 403. Behind a reverse proxy on the
same host every client looks like loopback: configure a token and keep the proxy off
`/debug/`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from prometheus_client.exposition import choose_encoder

from service.observability.metrics import REGISTRY
from service.observability.sampler import Sampler
from service.ops import page
from service.ops.workers import describe_workers, task_tree
from service.supervision import Supervisor

log = structlog.get_logger("service.ops")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[bytes, bytes]) -> Response:
        return cls(status, text.encode(), TEXT, headers)

    @classmethod
    def json(cls, document: Any) -> Response:
        return cls(200, json.dumps(document).encode(), JSON)


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[bytes, bytes]  # names lowercased; the first of repeated headers


class OpsApp:
    """Routes requests to views of the supervisor and the sampler."""

    def __init__(
        self, supervisor: Supervisor, sampler: Sampler, *, debug_token: str | None
    ) -> None:
        self._supervisor = supervisor
        self._sampler = sampler
        self._debug_token = debug_token
        self._routes: dict[str, Callable[[Request], Response]] = {
            "/livez": self._livez,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/debug": lambda request: Response.text(308, "", (b"location", b"/debug/")),
            "/debug/": self._page,
            "/debug/tasks": self._tasks,
            "/debug/workers": self._workers,
            "/debug/samples": self._samples,
        }

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            response = self.respond(scope)
            headers = [
                (b"content-type", response.content_type.encode()),
                (b"content-length", str(len(response.body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *response.headers,
            ]
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": response.body, "more_body": False})
        # A websocket is never accepted: hypercorn answers its handshake with 403.

    def respond(self, scope: HTTPScope) -> Response:
        """The response to one request, built at once on the event loop."""
        view = self._routes.get(scope["path"])
        if view is None:
            return Response.text(404, "not found\n")
        if scope["method"] != "GET":
            return Response.text(405, "only GET\n", (b"allow", b"GET"))
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        request = Request(scope["path"], query, headers)
        if request.path.startswith("/debug"):
            client = scope["client"][0] if scope["client"] else None
            refusal = self._refuse(request, client)
            if refusal is not None:
                return refusal
        return view(request)

    def _refuse(self, request: Request, client: str | None) -> Response | None:
        """Why this client may not read `/debug/*`, as a response; None if it may."""
        authorization = request.headers.get(b"authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            expected = self._debug_token
            if (
                expected is not None
                and scheme.lower() == b"bearer"
                and hmac.compare_digest(token.strip(), expected.encode())
            ):
                return None
            log.warning("ops.unauthorized", client=client, path=request.path)
            challenge = (b"www-authenticate", b'Bearer error="invalid_token"')
            return Response.text(401, "wrong credentials\n", challenge)
        if is_loopback(client):
            return None
        if self._debug_token is not None:
            return Response.text(
                401, "a bearer token is required\n", (b"www-authenticate", b"Bearer")
            )
        return Response.text(403, "/debug/ answers loopback clients only\n")

    def _livez(self, request: Request) -> Response:
        # Answering at all is the proof: this runs on the event loop.
        return Response.text(200, "ok\n")

    def _readyz(self, request: Request) -> Response:
        reasons = self._supervisor.not_ready_reasons()
        if reasons:
            return Response.text(503, "".join(f"{reason}\n" for reason in reasons))
        return Response.text(200, "ready\n")

    def _metrics(self, request: Request) -> Response:
        accept = request.headers.get(b"accept", b"").decode("latin-1")
        try:
            encode, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # prometheus_client chokes on a malformed version
            return Response.text(400, "malformed Accept header\n")
        return Response(200, encode(REGISTRY), content_type)

    def _page(self, request: Request) -> Response:
        return Response(200, page.HTML, "text/html; charset=utf-8", page.HEADERS)

    def _tasks(self, request: Request) -> Response:
        output = request.query.get("format", ["text"])[-1]
        if output not in ("text", "json"):
            return Response.text(400, "format must be text or json\n")
        tree = task_tree(self._supervisor)
        return (
            Response.json(tree.as_json()) if output == "json" else Response.text(200, tree.text())
        )

    def _workers(self, request: Request) -> Response:
        return Response.json(describe_workers(self._supervisor.statistics(), trio.current_time()))

    def _samples(self, request: Request) -> Response:
        now = trio.current_time()
        return Response.json(
            {
                "interval_s": self._sampler.interval,
                "samples": [
                    {
                        "ago_s": round(now - sample.at, 3),
                        "live": sample.tasks.live,
                        "spawned": sample.tasks.spawned,
                        "exited": sample.tasks.exited,
                        "lag_s": round(sample.lag, 6),
                    }
                    for sample in self._sampler.history
                ],
            }
        )


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (a dual-stack socket's view)."""
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    # Nothing to set up or tear down: the service owns every resource.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
