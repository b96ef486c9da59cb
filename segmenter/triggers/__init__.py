"""Campaign triggers: a rules file and the engine that fires rules on segment changes.

Pure (no Kafka, no clock, no environment). See :mod:`segmenter.triggers.rules`
for the file format and :class:`~segmenter.triggers.engine.TriggerEngine` for
the delivery controls.
"""

from __future__ import annotations

from segmenter.triggers.engine import CONTROLS, TriggerEngine, make_trigger_id
from segmenter.triggers.rules import RuleSet, describe_rules, load_rules, rules_from_dict

__all__ = ["CONTROLS", "RuleSet", "TriggerEngine", "describe_rules", "load_rules", "make_trigger_id", "rules_from_dict"]
