"""Prometheus metrics and the /metrics + /healthz HTTP endpoint.

Each service owns a :class:`Metrics` with its **own** ``CollectorRegistry``
(never prometheus_client's global one), so several services (tests, the
benchmark) live side by side in one process.

``/healthz`` answers 200 with a small JSON body while the processing loop is
alive (it ticked within ``stall_after_s``) and connected, 503 otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0, 7 * 86400.0)


class Metrics:
    """Every metric the service exports, registered on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter("segmenter_events_in", "Input records consumed.", registry=r)
        self.rejected = Counter("segmenter_events_rejected", "Input records dead-lettered, by error code.",
                                ["reason"], registry=r)
        self.outputs = Counter("segmenter_outputs", "Output messages produced, by kind.", ["kind"], registry=r)
        self.erasures = Counter("segmenter_erasures", "Customers erased by a Kafka tombstone.", registry=r)
        self.batches = Counter("segmenter_batches", "Batches committed.", registry=r)
        self.batch_failures = Counter("segmenter_batch_failures", "Batches aborted and replayed, by cause.",
                                      ["cause"], registry=r)
        self.batch_seconds = Histogram("segmenter_batch_seconds", "Time from a batch's first record to its commit.",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_seconds = Histogram("segmenter_commit_seconds", "Time to commit a batch (transaction or acks "
                                        "+ offsets).", buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_records = Histogram("segmenter_batch_records", "Input records per batch.",
                                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000), registry=r)
        self.end_to_end_lag = Histogram("segmenter_end_to_end_lag_seconds", "Output emitted_at minus the event ts.",
                                        buckets=_LAG_BUCKETS, registry=r)
        self.consumer_lag = Gauge("segmenter_consumer_lag", "Records behind the end of each input partition.",
                                  ["partition"], registry=r)
        self.segment_size = Gauge("segmenter_segment_size", "Customers per segment (this instance's partitions).",
                                  ["lens", "segment"], registry=r)
        self.restored_customers = Counter("segmenter_restored_customers", "Customers restored from the changelog.",
                                          registry=r)
        self.rules_reloads = Counter("segmenter_rules_reloads", "Rules file reloads, by result.", ["result"],
                                     registry=r)
        self.assigned_partitions = Gauge("segmenter_assigned_partitions", "Input partitions assigned.", registry=r)
        self.lens_sse_ratio = Gauge("segmenter_lens_sse_ratio", "Segment SSE over batch k-means SSE at the same k, "
                                    "at the last refinement (1.0: as good as batch).", ["lens"], registry=r)
        self.lens_silhouette = Gauge("segmenter_lens_silhouette", "Mean silhouette of the segments at the last "
                                     "refinement (sampled).", ["lens"], registry=r)

    def set_lens_quality(self, lenses: Iterable[Any]) -> None:
        """Copy each lens's quality (``Lens.quality``, measured at refinement) into the two gauges.

        Cheap (two gauge sets per lens); call it after each batch. Lenses not refined yet are skipped.
        """
        for lens in lenses:
            quality = lens.quality
            if quality is None:
                continue
            self.lens_sse_ratio.labels(lens.name).set(quality.sse_ratio)
            self.lens_silhouette.labels(lens.name).set(quality.silhouette)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


@dataclass
class Health:
    """Liveness of the processing loop, read by /healthz from the server thread."""

    stall_after_s: float = 60.0
    connected: bool = False
    last_tick: float = field(default_factory=time.monotonic)
    detail: str = "starting"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self, connected: bool, detail: str = "running") -> None:
        """Called by the loop on each iteration."""
        with self._lock:
            self.connected = connected
            self.detail = detail
            self.last_tick = time.monotonic()

    def status(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)``."""
        with self._lock:
            age = time.monotonic() - self.last_tick
            ok = self.connected and age < self.stall_after_s
            return ok, {"status": "ok" if ok else "unhealthy", "connected": self.connected,
                        "detail": self.detail, "last_tick_age_s": round(age, 3)}


class MetricsServer:
    """A tiny HTTP server thread serving ``/metrics`` and ``/healthz``."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        handler = _make_handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", *self._server.server_address[:2])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def _make_handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._reply(200, CONTENT_TYPE_LATEST, metrics.exposition())
            elif self.path.startswith("/healthz"):
                ok, body = health.status()
                self._reply(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._reply(404, "text/plain", b"not found\n")

        def _reply(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
