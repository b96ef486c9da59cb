"""The segmenter's configuration: one frozen, strictly validated model.

A config file is TOML or YAML with four sections and a seed::

    seed = 7

    [features]                # half-lives, lateness, dedup window
    activity_half_life_days = 14
    lateness_hours = 24

    [inactivity]              # time-driven re-scoring of quiet customers
    check_interval_hours = 24

    [refine]                  # periodic batch refinement of each lens
    every_events = 20000
    sample_size = 2000

    [[lenses]]                # one table per segmentation (see segmenter.lenses.config)
    name = "value"
    features = ["recency_days", "orders", "net_spend", "aov"]

Every error is a :class:`~segmenter.errors.ConfigError` whose message names the
file, the dotted field and the problem.

Examples
--------
>>> cfg = load_config()            # the packaged default
>>> [lens.name for lens in cfg.lenses]
['value', 'engagement']
>>> cfg.features.lateness_hours
24.0
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segmenter.documents import read_document
from segmenter.errors import ConfigError
from segmenter.features import FEATURE_NAMES
from segmenter.lenses.config import LensConfig

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureConfig",
    "InactivityConfig",
    "RefineConfig",
    "SegmenterConfig",
    "default_config",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path(__file__).parent / "defaults" / "default.toml"
"""The packaged default configuration file."""

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureConfig(_Section):
    """How per-customer features are computed (all durations in event time)."""

    frequency_half_life_days: PositiveFloat = 30.0
    """Half-life of the decayed purchase count (``frequency``)."""
    spend_half_life_days: PositiveFloat = 30.0
    """Half-life of the decayed net spend (``spend``)."""
    activity_half_life_days: PositiveFloat = 14.0
    """Half-life of sessions, views, cart adds, e-mail engagement and the ratios built on them."""
    lateness_hours: Annotated[float, Field(ge=0, le=24 * 365, allow_inf_nan=False)] = 24.0
    """Allowed lateness, per customer: an event older than (that customer's latest event time - lateness)
    is rejected as ``late``; the watermark drives only time-driven work and is this much behind the clock."""
    clock_quorum: Annotated[int, Field(ge=1, le=64)] = 5
    """A source's clock is the ``clock_quorum``-th largest latest event time over its distinct customers
    (fewer customers: the smallest of theirs), so fewer than this many bad clocks cannot move it."""
    max_future_hours: Annotated[float, Field(gt=0, le=24 * 365, allow_inf_nan=False)] = 24.0
    """A customer more than this far ahead of its source's clock is isolated: its events are applied to its own
    features, segments and outputs, never refused, but it takes no part in lens learning, refinement or the
    shared-mode sample, moves no clock and is not judged for lateness, until the clock reaches it."""
    recency_cap_days: PositiveFloat = 365.0
    """Upper bound of ``recency_days``."""
    dedup_size: Annotated[int, Field(ge=0, le=64)] = 8
    """How many recent event ids (as 32-bit hashes) are remembered per customer for de-duplication."""


class InactivityConfig(_Section):
    """Re-scoring of customers who went quiet, driven by the watermark."""

    check_interval_hours: PositiveFloat = 24.0
    """A re-scoring step runs each time the watermark crosses a multiple of this interval."""
    max_customers_per_step: Annotated[int, Field(ge=0)] | None = None
    """Deprecated, ignored: every customer not scored within the interval is re-scored at each step
    (one compiled pass over the population). Accepted so that older config files still load."""

    @model_validator(mode="after")
    def _deprecated(self) -> InactivityConfig:
        if self.max_customers_per_step is not None:
            logger.warning(
                "inactivity.max_customers_per_step is deprecated and ignored: every quiet customer is re-scored "
                "at each step now; remove it from the config file"
            )
        return self


class RefineConfig(_Section):
    """Periodic batch refinement of every lens on a sample of current customers."""

    every_events: Annotated[int, Field(ge=0)] = 20_000
    """Refine after this many accepted events (0 disables refinement by count)."""
    every_days: Annotated[float, Field(ge=0.0, le=366.0, allow_inf_nan=False)] = 7.0
    """Also refine each time the watermark crosses a multiple of this much event time (0 disables it): a sparse
    stream (a few events per customer over months) never reaches ``every_events``, and its scaled space would
    stay the warm-up's (value lens SSE 2.45 x batch k-means on bench/quality.py's sparse scenario; 1.03 with
    weekly refinements, at 3.7x the core's CPU time on that stream; 1.04 monthly, but then 15 segments born
    for 6 live). Not in shared mode (the trainer refines there)."""
    sample_size: Annotated[int, Field(ge=1)] = 2_000
    """Customers in each refinement sample (fewer when fewer are known)."""


class SegmenterConfig(_Section):
    """The whole core configuration (frozen; build it with :func:`load_config`)."""

    features: FeatureConfig = FeatureConfig()
    lenses: Annotated[list[LensConfig], Field(min_length=1)]
    inactivity: InactivityConfig = InactivityConfig()
    refine: RefineConfig = RefineConfig()
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0

    @model_validator(mode="after")
    def _check_lenses(self) -> SegmenterConfig:
        seen: dict[str, int] = {}
        for i, lens in enumerate(self.lenses):
            if lens.name in seen:
                raise ValueError(
                    f"lenses[{i}].name: duplicate lens name {lens.name!r} (also lenses[{seen[lens.name]}])"
                )
            seen[lens.name] = i
            for name in lens.features:
                if name not in FEATURE_NAMES:
                    raise ValueError(
                        f"lenses[{i}].features: unknown feature {name!r}; known features: {', '.join(FEATURE_NAMES)}"
                    )
        return self


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def config_from_dict(data: Any, source: str = "<config>") -> SegmenterConfig:
    """Validate already parsed config data; errors name ``source``, the dotted field and the problem.

    Examples
    --------
    >>> config_from_dict({"lenses": []}, "x.toml")
    Traceback (most recent call last):
    ...
    segmenter.errors.ConfigError: x.toml: lenses: List should have at least 1 item after validation, not 0
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a table/mapping at the top level")
    try:
        return SegmenterConfig.model_validate(data)
    except ConfigError as exc:  # raised as is by LensConfig's own checks; it names lens and field
        raise ConfigError(f"{source}: lenses: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            loc = _dotted(tuple(err["loc"]))
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            elif err["type"] == "missing":
                msg = "field required"
            problems.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
        raise ConfigError("; ".join(problems)) from None


def load_config(path: str | Path | None = None) -> SegmenterConfig:
    """Load and validate a TOML or YAML config file (``None``: the packaged default).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or a field is invalid.
    """
    if path is None:
        return default_config()
    p = Path(path)
    cfg = config_from_dict(read_document(p, "config file"), str(p))
    logger.debug("loaded config %s: lenses %s", p, [lens.name for lens in cfg.lenses])
    return cfg


def default_config() -> SegmenterConfig:
    """The packaged default configuration (``segmenter/defaults/default.toml``)."""
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    return config_from_dict(tomllib.loads(text), "segmenter/defaults/default.toml")
