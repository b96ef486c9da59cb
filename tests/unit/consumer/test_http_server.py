"""consumer.metrics.MetricsServer: route table, bearer token, health states, bounded threads, idle timeouts."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.metrics import Health, Metrics, MetricsServer, Response, Route, ServerLimits, default_routes


def _get(server: MetricsServer, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


Serve = Callable[..., MetricsServer]


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def serve(health: Health) -> Iterator[Serve]:
    """Start a server on a free port with ``MetricsServer``'s keyword arguments; stopped after the test."""
    servers: list[MetricsServer] = []

    def start(
        *, routes: Mapping[str, Route] | None = None, token: SecretStr | None = None, **limits: Any
    ) -> MetricsServer:
        table = routes if routes is not None else default_routes(Metrics(), health)
        server = MetricsServer(table, "127.0.0.1", 0, token=token, limits=ServerLimits(**limits))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_without_a_token_every_route_answers(serve: Serve, health: Health) -> None:
    server = serve()
    status, body = _get(server, "/metrics")
    assert status == 200 and b"segmenter_events_in_total" in body
    assert _get(server, "/nope")[0] == 404


def test_a_token_is_required_for_every_route_but_healthz(serve: Serve, health: Health) -> None:
    server = serve(token=SecretStr("s3cret"))
    health.tick(True)
    assert _get(server, "/metrics")[0] == 401
    assert _get(server, "/metrics", token="wrong")[0] == 401
    assert _get(server, "/metrics", token="s3cret")[0] == 200
    assert _get(server, "/metrics?name[]=x", token="s3cret")[0] == 200
    status, body = _get(server, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_healthz_reports_the_state_and_never_the_error_text(serve: Serve, health: Health) -> None:
    server = serve()
    status, body = _get(server, "/healthz")
    assert (status, json.loads(body)["status"]) == (503, "starting")
    health.tick(True)
    assert json.loads(_get(server, "/healthz")[1])["status"] == "ok"
    health.tick(False, "reconnecting: KafkaConnectionError: 10.1.2.3:9092 sasl user 'shop' refused")
    status, body = _get(server, "/healthz")
    assert (status, json.loads(body)) == (
        503,
        {"status": "degraded", "connected": False, "last_tick_age_s": json.loads(body)["last_tick_age_s"]},
    )
    assert b"10.1.2.3" not in body and b"shop" not in body


def test_a_stalled_loop_is_degraded(serve: Serve) -> None:
    stalled = Health(stall_after_s=0.0, connected=True)
    server = serve(routes=default_routes(Metrics(), stalled))
    status, body = _get(server, "/healthz")
    assert (status, json.loads(body)["status"]) == (503, "degraded")


def test_adding_a_page_is_one_route(serve: Serve, health: Health) -> None:
    routes = {**default_routes(Metrics(), health), "/segments": Route(lambda: Response(200, "application/json", b"[]"))}
    server = serve(routes=routes, token=SecretStr("t"))
    assert _get(server, "/segments", token="t") == (200, b"[]")
    assert _get(server, "/segments")[0] == 401


def test_many_idle_connections_hold_no_threads_and_healthz_still_answers(serve: Serve, health: Health) -> None:
    server = serve(threads=2, idle_timeout_s=30)
    health.tick(True)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        _wait(lambda: len(server._idle) == 300, "the server to accept the 300 idle connections")
        assert _get(server, "/healthz")[0] == 200
        assert _get(server, "/metrics")[0] == 200
        assert threading.active_count() <= before + 2  # at most the pool's 2 workers were started
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_connection_is_closed_after_the_timeout(serve: Serve) -> None:
    server = serve(idle_timeout_s=0.2)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the server closed it (recv returns at once on close, else times out)


def test_a_half_sent_request_is_cut_off_after_the_timeout(serve: Serve, health: Health) -> None:
    server = serve(threads=1, idle_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"GET /healthz HTTP/1.0\r\n")  # and never the blank line that ends the request
        slow.settimeout(10)
        assert slow.recv(1) == b""
    assert _get(server, "/healthz")[0] == 503  # the only worker is free again


def test_the_oldest_idle_connection_goes_when_the_limit_is_reached(serve: Serve) -> None:
    server = serve(max_connections=3, idle_timeout_s=30)
    first = socket.create_connection(("127.0.0.1", server.port))
    others = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        first.settimeout(10)
        assert first.recv(1) == b""
        assert _get(server, "/metrics")[0] == 200
    finally:
        for sock in (first, *others):
            sock.close()


def test_a_request_trickled_byte_by_byte_is_cut_off(serve: Serve, health: Health) -> None:
    server = serve(threads=1, idle_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.settimeout(0.05)
        deadline = time.monotonic() + 10
        cut = False
        while not cut and time.monotonic() < deadline:
            try:
                slow.sendall(b"X")  # each byte comes well within the per-read timeout
                cut = slow.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                cut = True
        assert cut, "the server kept a trickling connection for 10 s"
    assert _get(server, "/healthz")[0] == 503  # the only worker is free again
