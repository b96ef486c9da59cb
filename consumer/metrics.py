"""Prometheus metrics, the service's health, and the small HTTP server of ``/metrics`` and ``/healthz``.

Each service owns a :class:`Metrics` with its **own** ``CollectorRegistry``
(never prometheus_client's global one), so several services (tests, the
benchmark) live side by side in one process.

``/healthz`` answers 200 ``{"status": "ok", ...}`` while the processing loop is
alive (it ticked within ``stall_after_s``) and connected, and 503 with status
``starting`` (not connected yet) or ``degraded`` (connection lost, or the loop
stalled) otherwise. It never shows error text: what went wrong is in the log.

:class:`MetricsServer` serves a route table (:func:`default_routes`; adding a
page is one entry), with a bounded pool of threads: idle connections wait in a
selector, not in a thread, and are closed after ``idle_timeout_s``; a request
is read and answered by one of ``threads`` workers, within the same timeout.
With a ``token``, every route but the public ``/healthz`` needs
``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from consumer.bulk_histogram import BulkHistogram
from segmenter.lenses.quality import LensQuality

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0, 7 * 86400.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 20_000, 50_000, 100_000)
"""Input records per batch, up to the largest `batch_size`."""


class Metrics:
    """Every metric the service exports, registered on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter("segmenter_events_in", "Input records consumed.", registry=r)
        self.rejected = Counter(
            "segmenter_events_rejected", "Input records dead-lettered, by error code.", ["reason"], registry=r
        )
        self.outputs = Counter("segmenter_outputs", "Output messages produced, by kind.", ["kind"], registry=r)
        self.changes = Counter(
            "segmenter_segment_changes",
            "segment_change messages produced, by lens and cause.",
            ["lens", "cause"],
            registry=r,
        )
        self.triggers = Counter(
            "segmenter_campaign_triggers", "campaign_trigger messages produced, by campaign.", ["campaign"], registry=r
        )
        self.suppressed = Gauge(
            "segmenter_triggers_suppressed",
            "Campaign triggers a delivery control suppressed, "
            "by campaign and control (the core's count, restored with its state).",
            ["campaign", "control"],
            registry=r,
        )
        self.membership = Counter(
            "segmenter_membership_records",
            "Membership-table records written, by type (record or tombstone).",
            ["type"],
            registry=r,
        )
        self.erasures = Counter("segmenter_erasures", "Customers erased by a Kafka tombstone.", registry=r)
        self.key_mismatches = Counter(
            "segmenter_key_mismatches",
            "Input records whose Kafka key is not their event's customer_id (null or another value).",
            registry=r,
        )
        self.batches = Counter("segmenter_batches", "Batches committed.", registry=r)
        self.batch_failures = Counter(
            "segmenter_batch_failures", "Batches aborted and replayed, by cause.", ["cause"], registry=r
        )
        self.batch_seconds = Histogram(
            "segmenter_batch_seconds",
            "Time from a batch's first record to its commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "segmenter_commit_seconds",
            "Time to commit a batch (transaction or acks + offsets).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_records = Histogram(
            "segmenter_batch_records", "Input records per batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.end_to_end_lag = BulkHistogram(
            "segmenter_end_to_end_lag_seconds", "Output emitted_at minus the event ts.", _LAG_BUCKETS, r
        )
        self.consumer_lag = Gauge(
            "segmenter_consumer_lag", "Records behind the end of each input partition.", ["partition"], registry=r
        )
        self.segment_size = Gauge(
            "segmenter_segment_size",
            "Customers per segment (this instance's partitions).",
            ["lens", "segment"],
            registry=r,
        )
        self.restored_customers = Counter(
            "segmenter_restored_customers", "Customers restored from the changelog.", registry=r
        )
        self.rules_reloads = Counter(
            "segmenter_rules_reloads", "Rules file reloads, by result.", ["result"], registry=r
        )
        self.assigned_partitions = Gauge("segmenter_assigned_partitions", "Input partitions assigned.", registry=r)
        self.lens_sse_ratio = Gauge(
            "segmenter_lens_sse_ratio",
            "Segment SSE over batch k-means SSE at the same k, at the last refinement (1.0: as good as batch).",
            ["lens"],
            registry=r,
        )
        self.lens_silhouette = Gauge(
            "segmenter_lens_silhouette",
            "Mean silhouette of the segments at the last refinement (sampled).",
            ["lens"],
            registry=r,
        )

    def set_lens_quality(self, quality: Mapping[str, LensQuality]) -> None:
        """Copy each refined lens's quality (:meth:`Segmenter.lens_quality`, by lens name) into the two gauges."""
        for lens, q in quality.items():
            self.lens_sse_ratio.labels(lens).set(q.sse_ratio)
            self.lens_silhouette.labels(lens).set(q.silhouette)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


@dataclass
class Health:
    """Liveness of the processing loop, read by /healthz from the server thread.

    ``detail`` (what the loop is doing, e.g. the error it is recovering from) is
    logged when it changes, at DEBUG, and never served.
    """

    stall_after_s: float = 60.0
    connected: bool = False
    last_tick: float = field(default_factory=time.monotonic)
    detail: str = "starting"
    ever_connected: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.ever_connected = self.ever_connected or self.connected

    def tick(self, connected: bool, detail: str = "running") -> None:
        """Called by the loop on each iteration."""
        with self._lock:
            if detail != self.detail:
                log.debug("health: %s, %s", "connected" if connected else "not connected", detail)
            self.connected = connected
            self.ever_connected = self.ever_connected or connected
            self.detail = detail
            self.last_tick = time.monotonic()

    def status(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)``; ``body["status"]`` is ``ok``, ``starting`` or ``degraded``."""
        with self._lock:
            age = time.monotonic() - self.last_tick
            ok = self.connected and age < self.stall_after_s
            state = "ok" if ok else ("degraded" if self.ever_connected else "starting")
            return ok, {"status": state, "connected": self.connected, "last_tick_age_s": round(age, 3)}


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Route:
    """A page of the HTTP server: ``handler()`` makes its response; ``public`` routes need no token."""

    handler: Callable[[], Response]
    public: bool = False


def default_routes(metrics: Metrics, health: Health) -> dict[str, Route]:
    """``/metrics`` (Prometheus text) and the public ``/healthz`` (JSON). Add a page with one more entry."""

    def healthz() -> Response:
        ok, body = health.status()
        return Response(200 if ok else 503, "application/json", json.dumps(body).encode())

    return {
        "/metrics": Route(lambda: Response(200, CONTENT_TYPE_LATEST, metrics.exposition())),
        "/healthz": Route(healthz, public=True),
    }


@dataclass(frozen=True)
class ServerLimits:
    """How much the HTTP server takes on."""

    threads: int = 4
    """Most requests handled at once."""
    idle_timeout_s: float = 5.0
    """A connection that has not sent a complete request within this time is closed, and any connection
    is cut twice this long after it was accepted (a client trickling its request byte by byte)."""
    max_connections: int = 1024
    """Most connections held open; past it the oldest idle one is closed."""


class MetricsServer:
    """The HTTP server of the route table, on a thread of its own with a bounded pool of workers.

    Parameters
    ----------
    routes
        The route table, path (without query) to :class:`Route` (:func:`default_routes` and the pages).
    host, port
        Bind address (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface) and port (0: any free).
    token
        When set, every non-public route needs ``Authorization: Bearer <token>``.
    limits
        Workers, timeouts and connections (:class:`ServerLimits`).
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        host: str,
        port: int,
        *,
        token: SecretStr | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        limits = limits or ServerLimits()
        threads = limits.threads
        self.routes = dict(routes)
        self._token = token.get_secret_value().encode() if token is not None else None
        self._idle_timeout_s = limits.idle_timeout_s
        self._max_connections = limits.max_connections
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._idle: dict[socket.socket, float] = {}  # waiting for a request: connection -> when it was accepted
        self._busy: dict[socket.socket, float] = {}  # with a worker (under _lock): the same
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="metrics-http")
        self._stopping = threading.Event()
        self._handler = _make_handler(self)
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        """The bound address and port."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log.info(
            "HTTP server on http://%s:%d (%s)%s",
            *self.address,
            ", ".join(sorted(self.routes)),
            "; a bearer token is required but for /healthz" if self._token else "",
        )

    def stop(self) -> None:
        """Stop serving, close the socket and every idle connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for conn in list(self._idle):
            self._close(conn)
        self._selector.close()
        self._listener.close()

    def authorized(self, header: str | None) -> bool:
        """True without a token, or when ``header`` is ``Bearer <token>``."""
        if self._token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:  # a request is arriving: hand it to a worker
                    self._selector.unregister(sock)
                    with self._lock:
                        self._busy[sock] = self._idle.pop(sock)
                    self._pool.submit(self._handle, sock)
            now = time.monotonic()
            self._expire(now - self._idle_timeout_s)
            self._cut(now - 2 * self._idle_timeout_s)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._idle) >= self._max_connections:
            self._close(min(self._idle, key=self._idle.__getitem__))
        self._idle[conn] = time.monotonic()
        self._selector.register(conn, selectors.EVENT_READ)

    def _expire(self, accepted_before: float) -> None:
        for conn, accepted in list(self._idle.items()):
            if accepted < accepted_before:
                self._close(conn)

    def _cut(self, accepted_before: float) -> None:
        """Shut down connections a worker has held too long; the worker sees the end and closes them."""
        with self._lock:
            for conn, accepted in self._busy.items():
                if accepted < accepted_before:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)

    def _close(self, conn: socket.socket) -> None:
        if conn in self._idle:
            del self._idle[conn]
            self._selector.unregister(conn)
        conn.close()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(self._idle_timeout_s)
            self._handler(conn, conn.getpeername(), self)
        except OSError as exc:  # the client went away or was too slow
            log.debug("http: %r", exc)
        finally:
            with self._lock:
                self._busy.pop(conn, None)
            conn.close()


def _make_handler(server: MetricsServer) -> Callable[[socket.socket, Any, MetricsServer], BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a worker never waits on a kept-alive connection
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            route = server.routes.get(urlsplit(self.path).path)
            if route is None:
                self._reply(Response(404, "text/plain", b"not found\n"))
            elif not route.public and not server.authorized(self.headers.get("Authorization")):
                self._reply(
                    Response(401, "text/plain", b"a bearer token is required\n"),
                    {"WWW-Authenticate": 'Bearer realm="segmenter"'},
                )
            else:
                self._reply(route.handler())

        def _reply(self, response: Response, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler  # type: ignore[return-value]
