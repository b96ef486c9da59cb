"""The evaluate step: numpy metrics against scikit-learn, the batch yardstick, input errors and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score

from segmenter.__main__ import main
from segmenter.config import default_config, load_config
from segmenter.evaluation import (
    EvaluationInputError,
    EvaluationOptions,
    evaluate_lens,
    lens_space,
    parse_k_range,
    parse_snapshot,
)
from segmenter.lenses.lloyd import batch_kmeans
from segmenter.lenses.metrics import adjusted_rand, davies_bouldin, partition_sse, purity, silhouette
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events

RNG = np.random.default_rng(11)
BLOBS = np.vstack([RNG.normal(c, 0.6, (120, 3)) for c in ((0, 0, 0), (4, 0, 0), (0, 4, 0), (0, 0, 4))])
TRUE = np.repeat(np.arange(4), 120)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(len(TRUE)) < 0.3, rng.integers(0, 5, len(TRUE)), TRUE)
    assert adjusted_rand(labels, TRUE) == pytest.approx(adjusted_rand_score(TRUE, labels), abs=1e-12)
    assert silhouette(BLOBS, labels, sample=10_000) == pytest.approx(silhouette_score(BLOBS, labels), abs=1e-9)
    assert davies_bouldin(BLOBS, labels) == pytest.approx(davies_bouldin_score(BLOBS, labels), abs=1e-9)


def test_purity_and_partition_sse_by_hand() -> None:
    assert purity(["a", "a", "b", "b"], ["x", "y", "y", "y"]) == 0.75
    x = np.array([[0.0], [2.0], [10.0]])
    assert partition_sse(x, np.array([0, 0, 1])) == pytest.approx(2.0)  # (0-1)^2 + (2-1)^2


def test_batch_kmeans_is_as_good_as_scikit_learn() -> None:
    for k, slack in ((3, 1.001), (4, 1.001), (6, 1.02)):  # 6 clusters on 4 blobs: near-equal local optima
        _, labels, inertia = batch_kmeans(BLOBS, k, np.random.default_rng(0), n_init=10)
        sk = SkKMeans(n_clusters=k, n_init=10, random_state=0).fit(BLOBS)
        assert inertia <= sk.inertia_ * slack, k
        assert partition_sse(BLOBS, labels) == pytest.approx(inertia)


def test_lens_space_logs_heavy_columns_then_standardises() -> None:
    raw = np.array([[0.0, 1.0], [np.e - 1.0, 3.0], [np.e**2 - 1.0, 5.0]])
    z = lens_space(raw, [0])
    np.testing.assert_allclose(z[:, 0], [-1.224744871, 0.0, 1.224744871])  # log1p -> 0, 1, 2 -> z
    np.testing.assert_allclose(z[:, 1], z[:, 0])


FEATS = ("a", "b", "c")


def test_a_worse_partition_scores_worse_on_every_measure() -> None:
    good = evaluate_lens("v", FEATS, BLOBS, [f"v-{i}" for i in TRUE], EvaluationOptions((), k_range=(2, 6), seed=3))
    assert good.k == 4 and good.sse_ratio == pytest.approx(1.0, abs=0.01) and good.ari_vs_batch > 0.97
    assert good.suggested_k == 4 and good.stability > 0.9
    shuffled = TRUE.copy()
    shuffled[:120] = np.random.default_rng(5).integers(0, 4, 120)
    bad = evaluate_lens("v", FEATS, BLOBS, [f"v-{i}" for i in shuffled], EvaluationOptions((), k_range=(2, 3), seed=3))
    assert bad.sse_ratio > good.sse_ratio + 0.2
    assert bad.ari_vs_batch < good.ari_vs_batch - 0.1
    assert bad.silhouette < good.silhouette and bad.davies_bouldin > good.davies_bouldin


def test_truth_measures_and_unassigned_rows() -> None:
    labels: list[str | None] = [f"s{i}" for i in TRUE]
    labels[0] = None
    truth: list[str | None] = [f"p{i}" for i in TRUE]
    truth[1] = None
    ev = evaluate_lens("v", ("a", "b", "c"), BLOBS, labels, EvaluationOptions((), truth, k_range=(2, 2)))
    assert ev.unassigned == 1
    assert ev.purity == 1.0 and ev.ari_vs_truth == 1.0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{not json", "not JSON"),
        (b'{"customer_id": "c2", "segments": {}}', "KeyError"),
        (b'{"customer_id": "c2", "segments": {}, "features": {"v": {"a": "x"}}}', "ValueError"),
        (b'{"customer_id": "c2", "segments": {}, "features": {"w": {"a": 1}}}', "lenses"),
    ],
)
def test_a_bad_snapshot_line_is_named_by_file_and_line(line: bytes, expected: str) -> None:
    good = b'{"customer_id": "c1", "segments": {"v": null}, "features": {"v": {"a": 1.0}}}'
    with pytest.raises(EvaluationInputError, match=rf"^snap\.jsonl:3: .*{expected}"):
        parse_snapshot(good + b"\n\n" + line, "snap.jsonl")


def test_k_range_is_checked() -> None:
    assert parse_k_range("3..7") == (3, 7)
    for bad in ("1..4", "5..3", "2-9", "x..y"):
        with pytest.raises(ValueError, match="--k-range"):
            parse_k_range(bad)


def _snapshot(path: Path) -> None:
    lines = []
    for i, (x, t) in enumerate(zip(BLOBS.tolist(), TRUE.tolist(), strict=True)):
        lines.append({"customer_id": f"c{i:04d}", "segments": {"v": {"id": f"v-{t + 1}", "name": f"n{t}"}},
                      "features": {"v": dict(zip(("tenure_days", "aov", "conversion"), x, strict=True))}})  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")


def test_cli_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap, truth = tmp_path / "snap.jsonl", tmp_path / "truth.jsonl"
    _snapshot(snap)
    truth.write_text("".join(json.dumps({"customer_id": f"c{i:04d}", "persona": f"p{t}", "from": "2026-01-01",
                                         "cause": "initial"}) + "\n" for i, t in enumerate(TRUE.tolist())))  # fmt: skip
    assert main(["evaluate", str(snap), "--truth", str(truth), "--k-range", "2..5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (lens,) = out["lenses"]
    assert lens["lens"] == "v" and lens["k"] == 4 and lens["purity"] > 0.95 and len(lens["sweep"]) == 4
    assert main(["evaluate", str(snap), "--k-range", "2..3"]) == 0
    table = capsys.readouterr().out
    assert "batch k-means" in table and "v: batch k-means sweep" in table
    assert table.count("\n") > 8  # the lens row and the sweep rows


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.jsonl"
    snap.write_bytes(b'{"customer_id": "c1"}\n')
    assert main(["evaluate", str(snap)]) == 2  # a user error (exit 2, one line), as every segmenter command
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {snap}:1: ") and "\n" not in err
    assert main(["evaluate", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["evaluate", str(snap), "--k-range", "9..2"]) == 2


def test_rules_in_the_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.jsonl"
    _snapshot(snap)
    assert main(["evaluate", str(snap), "--k-range", "2..2", "--json"]) == 0
    (lens,) = json.loads(capsys.readouterr().out)["lenses"]
    assert sorted(lens["rules"]) == ["v-1", "v-2", "v-3", "v-4"]
    for rule in lens["rules"].values():
        assert rule["fidelity"]["members_matched"] > 0.9 and rule["fidelity"]["non_members_excluded"] > 0.9
        assert {c["feature"] for c in rule["conditions"]} <= {"tenure_days", "aov", "conversion"}


def test_checkpoint_profile_and_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = default_config().model_dump()
    for lens in data["lenses"]:
        lens.update(warmup=60, learn_every=2, batch_size=8, refresh_every=64)
    data["refine"].update(every_events=400)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(json.dumps(data))  # JSON is YAML
    seg = Segmenter(load_config(cfg_path))
    seg.process_batch(to_events(make_events(120, 30, seed=4)))
    ck = tmp_path / "ck.bin"
    ck.write_bytes(seg.snapshot())
    assert main(["profile", str(ck), "--config", str(cfg_path)]) == 0
    assert "rule: " in capsys.readouterr().out
    assert main(["evaluate", str(ck), "--config", str(cfg_path), "--k-range", "2..3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {lens["lens"] for lens in out["lenses"]} == {"value", "engagement"}
    assert all(lens["customers"] == 120 and lens["rules"] for lens in out["lenses"])


def test_each_lens_is_evaluated_in_its_configured_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the default value lens keeps recency_days linear (log_features): the evaluation must measure it so
    rng = np.random.default_rng(4)
    lines = []
    for i in range(300):
        vals = {"recency_days": float(rng.choice([1.0, 5.0, 120.0])) + rng.random(), "orders": 1.0 + i % 3,
                "net_spend": 20.0 * (1 + i % 3), "aov": 20.0}  # fmt: skip
        lines.append(orjson.dumps({"customer_id": f"c{i}", "segments": {"value": {"id": f"value-{i % 2}", "name": "x"}},
                                   "features": {"value": vals}}))  # fmt: skip
    snap = tmp_path / "snap.jsonl"
    snap.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["evaluate", str(snap), "--k-range", "2..2", "--json"]) == 0
    (got,) = json.loads(capsys.readouterr().out)["lenses"]
    raw = np.asarray([list(orjson.loads(x)["features"]["value"].values()) for x in lines])
    labels = [orjson.loads(x)["segments"]["value"]["id"] for x in lines]
    features = ("recency_days", "orders", "net_spend", "aov")
    heavy = default_config().lenses[0].heavy_features
    assert "recency_days" not in heavy
    linear = evaluate_lens("value", features, raw, labels, EvaluationOptions(heavy=heavy, k_range=(2, 2)))
    logged = evaluate_lens("value", features, raw, labels, EvaluationOptions(k_range=(2, 2)))
    assert got["sse_ratio"] == pytest.approx(linear.sse_ratio) and got["sse_ratio"] != pytest.approx(logged.sse_ratio)
