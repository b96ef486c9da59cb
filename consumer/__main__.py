"""``segmenter-consumer`` (= ``python -m consumer``): run the Kafka service.

Logging is configured here and only here (``--log-format text|json``; see :mod:`consumer.logs`).
SIGTERM and SIGINT finish the open batch, commit it and exit 0.

Exit codes: 0 clean stop, 1 unexpected error, 2 invalid settings/config/rules,
3 fenced by a newer instance with the same id, 4 topic setup failed, 5 TLS or
SASL authentication failed.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from consumer.errors import AuthenticationError, FencedError, SettingsError, TopicSetupError, UnsupportedClientError
from consumer.kafka_io import KafkaAdmin, KafkaTransport
from consumer.logs import configure_logging
from consumer.metrics import Health, Metrics, MetricsServer, default_routes
from consumer.service import Core, RulesWatcher, Service, utc_now
from consumer.settings import Settings, load_settings
from consumer.sink import RebalanceHandler, Transport
from consumer.topics import ensure_topics, plan
from consumer.trainer import TrainerCore, TrainerRole
from consumer.warmup import warm_up
from segmenter.config import load_config
from segmenter.errors import SegmenterError
from segmenter.gc_tuning import tune_gc
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer
from segmenter.triggers.rules import load_rules

log = logging.getLogger("consumer")


def build_service(settings: Settings, metrics: Metrics, health: Health) -> Service:
    """Wire settings, topics, the Kafka transport and the real core together.

    Raises
    ------
    SegmenterError
        The config or rules file is invalid.
    """
    config = load_config(settings.config_file)
    watcher: RulesWatcher | None = None
    if settings.rules_file is not None:
        watcher = RulesWatcher(Path(settings.rules_file), lambda p: load_rules(p, config),
                               settings.rules_check_interval_s)
        watcher.load_initial()

    def make_core(rules: Any) -> Core:
        if settings.shared:
            return Segmenter(config, rules, shared=True, vector_every=settings.vector_every)
        return Segmenter(config, rules)

    warm_up(lambda: make_core(None))

    def make_transport(handler: RebalanceHandler) -> Transport:
        admin = KafkaAdmin(settings)
        try:
            ensure_topics(admin, settings)
        finally:
            admin.close()
        produce = [spec.name for spec in plan(settings, 1) if spec.name != settings.topics.input]
        return KafkaTransport(settings, handler, produce)

    trainer: Callable[[], TrainerRole] | None = None
    if settings.shared:
        trainer_settings = settings.model_copy(update={
            "group_id": settings.trainer_group_id,
            "topics": settings.topics.model_copy(update={"input": settings.vectors_topic}),
        })

        def make_trainer_core(snapshot: bytes | None) -> TrainerCore:
            return ModelTrainer(config) if snapshot is None else ModelTrainer.from_state(config, snapshot)

        def make_trainer() -> TrainerRole:
            return TrainerRole(settings, lambda handler: KafkaTransport(trainer_settings, handler),
                               make_trainer_core, utc_now)

        trainer = make_trainer
    return Service(settings, make_transport, make_core, metrics=metrics, health=health, rules=watcher,
                   trainer=trainer)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segmenter-consumer``; returns the exit code."""
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
    server: MetricsServer | None = None
    if settings.metrics_port >= 0:
        server = MetricsServer(metrics, health, settings.metrics_host, settings.metrics_port,
                               token=settings.metrics_token, threads=settings.metrics_threads,
                               idle_timeout_s=settings.metrics_timeout_s,
                               routes={**default_routes(metrics, health), **service.explorer.routes()})
        server.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the open batch", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: dump every thread's stack
    try:
        service.run()
    except FencedError as exc:
        log.error("fenced: another instance with transactional id %s took over; exiting: %s",
                  settings.transactional_id, exc)
        return 3
    except TopicSetupError as exc:
        log.error("topic setup failed: %s", exc)
        return 4
    except AuthenticationError as exc:
        log.error("cannot log in to Kafka: %s", exc)
        return 5
    except UnsupportedClientError as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("the service failed")
        return 1
    finally:
        if server is not None:
            server.stop()
    log.info("stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
