"""``segmenter-consumer`` (= ``python -m consumer``): run the Kafka service.

Logging is configured here and only here (``--log-format text|json``; see :mod:`consumer.logs`).
SIGTERM and SIGINT finish the open batch, commit it and exit 0.

Exit codes: 0 clean stop, 1 unexpected error, 2 invalid settings/config/rules,
3 fenced by a newer instance with the same id, 4 topic setup failed, 5 TLS or
SASL authentication failed.
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS (a setting in the environment wins): the core's matrices are
# small (refinement, quality gauges) and OpenBLAS's idle worker threads spin between calls (see segmenter/__main__.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import faulthandler
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from consumer.errors import AuthenticationError, FencedError, SettingsError, TopicSetupError, UnsupportedClientError
from consumer.kafka_io import KafkaAdmin, KafkaTransport
from consumer.logs import configure_logging
from consumer.metrics import Health, Metrics, MetricsServer, ServerLimits, default_routes
from consumer.rules_watcher import RulesWatcher
from consumer.service import Service, TransportFactory, Wiring, utc_now
from consumer.settings import Settings, load_settings
from consumer.sink import RebalanceHandler, Transport
from consumer.snapshots import SnapshotKeeper
from consumer.topics import ensure_topics, plan
from consumer.trainer import TrainerCore, TrainerRole
from consumer.views import ViewFollower
from consumer.warmup import warm_up
from segmenter.config import SegmenterConfig, load_config
from segmenter.errors import SegmenterError
from segmenter.gc_tuning import tune_gc
from segmenter.malloc_tuning import tune_malloc
from segmenter.numba_probes import load_numba_probes
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer
from segmenter.triggers.rules import RuleSet, load_rules

log = logging.getLogger("consumer")


def build_service(settings: Settings, metrics: Metrics, health: Health) -> Service[Segmenter]:
    """Wire settings, topics, the Kafka transport and the real core together; the mode is decided here, once.

    Raises
    ------
    SegmenterError
        The config or rules file is invalid.
    """
    config = load_config(settings.config_file)
    watcher: RulesWatcher | None = None
    if settings.rules_file is not None:
        watcher = RulesWatcher(
            Path(settings.rules_file), lambda p: load_rules(p, config), settings.rules_check_interval_s
        )
        watcher.load_initial()
    warm_up(lambda: Segmenter(config, None))  # numba's one-time start here, not inside the first batch
    transport = _transport_factory(settings)
    if not settings.shared:
        single: Wiring[Segmenter] = Wiring(
            transport,
            lambda rules: Segmenter(config, rules),
            SnapshotKeeper(settings.instance_id, settings.model_topic),
            rules=watcher,
        )
        return Service(settings, single, metrics=metrics, health=health)

    def make_core(rules: RuleSet | None) -> Segmenter:
        return Segmenter(config, rules, shared=True, vector_every=settings.vector_every)

    views = ViewFollower(settings.model_topic, settings.state_topic, settings.vectors_topic, settings.instance_id)
    trainer = _trainer_role(settings, config)
    shared: Wiring[Segmenter] = Wiring(transport, make_core, views, trainer=trainer, rules=watcher)
    return Service(settings, shared, metrics=metrics, health=health)


def _transport_factory(settings: Settings) -> TransportFactory:
    """Ensures the topics, then connects the service's consumer and transactional producer."""

    def make_transport(handler: RebalanceHandler) -> Transport:
        admin = KafkaAdmin(settings)
        try:
            ensure_topics(admin, settings)
        finally:
            admin.close()
        produce = [spec.name for spec in plan(settings, 1) if spec.name != settings.topics.input]
        return KafkaTransport(settings, handler, produce)

    return make_transport


def _trainer_role(settings: Settings, config: SegmenterConfig) -> Callable[[], TrainerRole]:
    """Shared mode: the trainer role of each session (group ``<group>.trainer`` on the vectors topic)."""
    trainer_settings = settings.model_copy(
        update={
            "group_id": settings.trainer_group_id,
            "topics": settings.topics.model_copy(update={"input": settings.vectors_topic}),
        }
    )

    def make_trainer_core(snapshot: bytes | None) -> TrainerCore:
        return ModelTrainer(config) if snapshot is None else ModelTrainer.from_state(config, snapshot)

    def make_trainer() -> TrainerRole:
        return TrainerRole(
            settings, lambda handler: KafkaTransport(trainer_settings, handler), make_trainer_core, utc_now
        )

    return make_trainer


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segmenter-consumer``; returns the exit code."""
    tune_malloc()  # before the core allocates its columns
    load_numba_probes()  # before the warm-up's first compiled call: ~0.15 s of scipy.linalg and cffi otherwise
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"segmenter-consumer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics()
    health = Health(stall_after_s=max(60.0, settings.commit_interval_ms / 1000 * 10))
    try:
        service = build_service(settings, metrics, health)
    except SegmenterError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    tune_gc()
    server = _start_server(settings, metrics, health, service)
    _handle_signals(service)
    try:
        code = _run(service, settings)
    finally:
        if server is not None:
            server.stop()
    if code == 0:
        log.info("stopped cleanly")
    return code


def _start_server(
    settings: Settings, metrics: Metrics, health: Health, service: Service[Segmenter]
) -> MetricsServer | None:
    """The metrics, health and explorer server (``None`` with ``--metrics-port -1``)."""
    if settings.metrics_port < 0:
        return None
    server = MetricsServer(
        {**default_routes(metrics, health), **service.explorer.routes()},
        settings.metrics_host,
        settings.metrics_port,
        token=settings.metrics_token,
        limits=ServerLimits(threads=settings.metrics_threads, idle_timeout_s=settings.metrics_timeout_s),
    )
    server.start()
    return server


def _handle_signals(service: Service[Segmenter]) -> None:
    """SIGTERM and SIGINT finish the open batch; SIGUSR1 dumps every thread's stack."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the open batch", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: dump every thread's stack


def _run(service: Service[Segmenter], settings: Settings) -> int:
    """Run the service; returns the exit code (see the module docstring)."""
    try:
        service.run()
    except (FencedError, TopicSetupError, AuthenticationError, UnsupportedClientError) as exc:
        code, message = _failure(exc, settings)
        log.error("%s", message)
        return code
    except Exception:
        log.exception("the service failed")
        return 1
    return 0


def _failure(exc: Exception, settings: Settings) -> tuple[int, str]:
    """The exit code and ERROR line of a failure the service stops on."""
    if isinstance(exc, FencedError):
        return (
            3,
            f"fenced: another instance with transactional id {settings.transactional_id} took over; exiting: {exc}",
        )
    if isinstance(exc, TopicSetupError):
        return 4, f"topic setup failed: {exc}"
    if isinstance(exc, AuthenticationError):
        return 5, f"cannot log in to Kafka: {exc}"
    return 1, str(exc)


if __name__ == "__main__":
    sys.exit(main())
