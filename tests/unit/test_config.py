"""SegmenterConfig: loading TOML/YAML, validation and error messages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from segmenter.config import DEFAULT_CONFIG_PATH, SegmenterConfig, config_from_dict, default_config, load_config
from segmenter.errors import ConfigError

MINIMAL = """
seed = 3
[features]
lateness_hours = 6
[[lenses]]
name = "value"
features = ["recency_days", "spend"]
params = { n_clusters = 3 }
"""


def test_default_config_has_the_two_documented_lenses() -> None:
    cfg = default_config()
    assert [lens.name for lens in cfg.lenses] == ["value", "engagement"]
    assert cfg.lenses[0].features == ["recency_days", "orders", "net_spend", "aov"]
    assert cfg.lenses[1].features == ["sessions", "product_views", "cart_abandonment", "conversion", "email_engagement"]
    assert cfg.lenses[0].params["n_clusters"] == 5
    assert cfg.lenses[1].params["n_clusters"] == 4
    assert load_config(None) == cfg == load_config(DEFAULT_CONFIG_PATH)


def test_toml_and_yaml_give_the_same_config(tmp_path: Path) -> None:
    toml_file = tmp_path / "c.toml"
    toml_file.write_text(MINIMAL)
    from_toml = load_config(toml_file)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(yaml.safe_dump(tomllib.loads(MINIMAL)))
    assert load_config(yaml_file) == from_toml
    assert from_toml.seed == 3
    assert from_toml.features.lateness_hours == 6.0
    assert from_toml.features.activity_half_life_days == 14.0  # default kept


def test_config_is_frozen() -> None:
    cfg = default_config()
    with pytest.raises(ValidationError):
        cfg.seed = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL.replace("lateness_hours = 6", "latenes_hours = 6"), "features.latenes_hours: unknown field"),
        (MINIMAL.replace("lateness_hours = 6", "lateness_hours = -1"), "features.lateness_hours:"),
        (MINIMAL.replace('"spend"]', '"spnd"]'), "lenses[0].features: unknown feature 'spnd'"),
        (MINIMAL + "[inactivity]\ncheck_interval_hours = 0\n", "inactivity.check_interval_hours:"),
        (MINIMAL + "[refine]\nsample_size = 0\n", "refine.sample_size:"),
        (MINIMAL.replace("seed = 3", "seed = -1"), "seed:"),
        ("seed = 1\n", "lenses: field required"),
    ],
)
def test_errors_name_file_and_dotted_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_duplicate_lens_names_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text(MINIMAL + MINIMAL[MINIMAL.index("[[lenses]]") :])
    with pytest.raises(ConfigError, match=r"lenses\[1\]\.name: duplicate lens name 'value'"):
        load_config(path)


def test_lens_errors_from_lens_config_keep_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "lens.toml"
    path.write_text(MINIMAL.replace("n_clusters = 3", "k = 3"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: lenses: lens 'value'")
    assert "params.k" in str(err.value)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("seed: [1")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad_yaml)
    other = tmp_path / "c.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match="unknown config file format"):
        load_config(other)
    with pytest.raises(ConfigError, match="top level"):
        config_from_dict([1, 2], "x.yaml")


def test_config_round_trips_through_its_dump() -> None:
    cfg = default_config()
    assert SegmenterConfig.model_validate(cfg.model_dump()) == cfg


@pytest.mark.parametrize("name", ["c.toml", "c.yaml"])
def test_a_leading_utf8_byte_order_mark_is_skipped(tmp_path: Path, name: str) -> None:
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    if name.endswith(".yaml"):
        text = yaml.safe_dump(tomllib.loads(text))
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(path) == default_config()
