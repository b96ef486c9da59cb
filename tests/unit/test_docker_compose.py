"""docker-compose.yml cannot run here (no Docker engine), so it is validated statically."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.metrics import Metrics
from consumer.settings import load_settings
from producer.__main__ import build_parser
from producer.settings import load_connection
from tests.dashboards import dashboard, exported_names, metric_names, queries

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = (ROOT / "scripts" / "kafka-local").read_text()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "consumer", "producer", "prometheus", "grafana"}


def test_broker_image_matches_local_launcher_version(compose: dict[str, Any]) -> None:
    launcher_version = re.search(r'KAFKA_VERSION = os.environ.get\("SEGMENTER_KAFKA_VERSION", "([\d.]+)"\)', LAUNCHER)
    assert launcher_version is not None
    for name in ("kafka", "topics"):
        assert compose["services"][name]["image"] == f"apache/kafka:{launcher_version.group(1)}"


def test_broker_is_kraft_single_node_with_consistent_listeners(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{node_id}@")

    def names(listeners: str) -> set[str]:
        return {entry.split("://")[0] for entry in listeners.split(",")}

    listeners = names(env["KAFKA_LISTENERS"])
    protocol_map = {pair.split(":")[0] for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert listeners <= protocol_map
    assert names(env["KAFKA_ADVERTISED_LISTENERS"]) <= listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    controller_port = voters.split(":")[-1]
    assert f"CONTROLLER://:{controller_port}" in env["KAFKA_LISTENERS"]
    # single node: every internal topic must be replicated once, as in scripts/kafka-local
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[key] == 1, key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0


def test_broker_has_a_healthcheck_against_its_own_listener(compose: dict[str, Any]) -> None:
    health = compose["services"]["kafka"]["healthcheck"]
    command = " ".join(health["test"])
    assert "kafka-broker-api-versions.sh" in command
    assert "kafka:9092" in command
    assert health["retries"] >= 1


def test_dependants_wait_for_a_healthy_broker_and_created_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("consumer", "producer"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["SEGMENTER_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert services[name]["build"] == "."


def test_topic_service_creates_every_contract_topic_with_compaction_for_state(compose: dict[str, Any]) -> None:
    script = compose["services"]["topics"]["command"][0]
    created = dict(re.findall(r"--topic (\S+) --partitions \d+ --replication-factor 1(.*)", script))
    assert set(created) == {
        "customer-events",
        "segment-events",
        "customer-events.dlq",
        "segmenter.state",
        "segmenter.model",
        "segment-membership",
    }
    assert "cleanup.policy=compact" in created["segmenter.state"]
    assert "cleanup.policy=compact" in created["segmenter.model"]
    assert "cleanup.policy=compact" in created["segment-membership"]
    partitions = dict(re.findall(r"--topic (\S+) --partitions (\d+)", script))
    assert partitions["segment-membership"] == partitions["customer-events"], "co-partitioned with the input"
    assert "compact" not in created["customer-events"]


def test_dockerfile_installs_the_package_and_copies_what_it_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    for path in ("segmenter", "consumer", "producer", "pyproject.toml"):
        assert path in dockerfile
        assert (ROOT / path).exists()
    assert "pip install ." in dockerfile


def test_dockerfile_warms_the_numba_cache_as_the_user_who_runs_the_image() -> None:
    """numba ignores a cache its user cannot write: warmed as root into site-packages, it would compile again."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = next(i for i, line in enumerate(lines) if line.startswith("USER "))
    name = lines[user].split()[1]
    warm = next(i for i, line in enumerate(lines) if "warm_up(" in line)
    cache = next(line for line in lines if line.startswith("ENV NUMBA_CACHE_DIR="))
    assert warm > user, "the warm-up runs as the image's user"
    assert cache.split("=", 1)[1].startswith(f"/home/{name}/"), "a cache directory that user owns"


def test_producer_command_is_accepted_by_the_real_cli(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose["services"]["producer"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    command = service["command"]
    assert command[0] == "segmenter-producer"
    args = build_parser().parse_args(command[1:])
    connection = load_connection(vars(args))
    assert (args.command, args.to.kind, connection.bootstrap_servers) == ("synth", "kafka", "kafka:9092")


def test_consumer_environment_is_read_by_the_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"]["consumer"]
    assert service["command"] == ["segmenter-consumer"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings([])
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.group_id == service["environment"]["SEGMENTER_GROUP_ID"]
    assert settings.metrics_port == int(service["environment"]["SEGMENTER_METRICS_PORT"])
    assert f"{settings.metrics_port}:{settings.metrics_port}" in service["ports"]
    # the published port reaches the server only if it listens on every interface of the container
    assert settings.metrics_host == "0.0.0.0"
    # the state and model topics the topic service creates are the ones this group uses
    script = compose["services"]["topics"]["command"][0]
    assert f"--topic {settings.group_id}.state " in script and f"--topic {settings.group_id}.model " in script


def host_mounts(service: dict[str, Any]) -> dict[str, str]:
    """``{host path: container path}`` of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("."):
            mounts[host] = container
    return mounts


def test_every_file_a_service_mounts_exists(compose: dict[str, Any]) -> None:
    mounted = [host for service in compose["services"].values() for host in host_mounts(service)]
    assert mounted, "prometheus and grafana mount their configuration"
    for host in mounted:
        assert (ROOT / host).exists(), host


def test_prometheus_scrapes_the_consumer_metrics_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = host_mounts(services["prometheus"])
    config_file = next(h for h, c in mounts.items() if c == "/etc/prometheus/prometheus.yml")
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    config = yaml.safe_load((ROOT / config_file).read_text())
    [job] = config["scrape_configs"]
    port = services["consumer"]["environment"]["SEGMENTER_METRICS_PORT"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"consumer:{port}"]


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {c: ROOT / h for h, c in host_mounts(services["grafana"]).items()}
    provisioning = mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prometheus_port}"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "segmenter.yml").read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == ROOT / "deploy" / "grafana" / "dashboards"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/") and (mounts[dashboards_dir] / Path(home).name).exists()
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    assert board["templating"]["list"][0]["datasource"]["uid"] == source["uid"]


def test_dashboard_covers_what_operators_need() -> None:
    expressions = queries(dashboard())
    used = metric_names(expressions)
    for name in (
        "segmenter_events_in_total",
        "segmenter_consumer_lag",
        "segmenter_events_rejected_total",
        "segmenter_segment_changes_total",
        "segmenter_segment_size",
        "segmenter_batch_seconds_bucket",
        "segmenter_commit_seconds_bucket",
        "segmenter_campaign_triggers_total",
    ):
        assert name in used, name
    assert any("by (reason)" in e for e in expressions) and any("by (cause)" in e for e in expressions)
    assert any("by (campaign)" in e for e in expressions)


def test_dashboard_queries_name_only_metrics_the_consumer_registers() -> None:
    exported = exported_names(Metrics().exposition().decode())
    assert metric_names(queries(dashboard())) <= exported
