"""``TriggerEngine``: turns segment changes into campaign triggers under delivery controls.

Pure and deterministic: no Kafka, no wall clock, no environment. Every time is
the change's event time (``change.event_ts``); quiet-hours holds are released
by the caller's watermark (:meth:`TriggerEngine.release`).

What happens to one :class:`~segmenter.outputs.SegmentChange`:

1. ``erasure`` changes erase the customer's trigger state and never fire.
2. Held triggers of the same lens whose condition no longer holds (the
   customer left the entered segments before the quiet hours ended) are
   cancelled (control ``superseded``).
3. Re-entry: ``after_exit`` rules are re-armed when the customer is outside
   their segments (exit rules: back inside).
4. Rules on the change's lens are tried by descending priority, then name.
   A rule *matches* if ``on`` and ``causes`` fit and every ``when`` condition
   holds. A matching rule is then *suppressed* by the first control that
   stops it: ``reentry``, ``cooldown``, ``cap``, ``quiet_hours`` (action
   ``drop``) or ``missing_feature``. Held triggers (quiet hours, action
   ``hold``) count for cooldown, cap and re-entry at their release time.

Cooldown and cap look at deliveries on both sides of the new one, so they hold
whatever the order of the input: no two deliveries of a campaign to a customer
are closer than the rule's cooldown, and no rolling window of the cap's
period holds more than ``cap.max`` deliveries to a customer (the delivery time
of a held trigger is its release time).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from segmenter.errors import StateError
from segmenter.events import CustomerEvent
from segmenter.outputs import CampaignTrigger, SegmentChange, SegmentRef
from segmenter.triggers.controls import cap_blocks, cooldown_blocks, reentry_blocks
from segmenter.triggers.expressions import MissingFeatureError, render_payload
from segmenter.triggers.rules import CompiledRule, RuleSet, compile_rules

logger = logging.getLogger(__name__)

__all__ = ["CONTROLS", "TriggerEngine", "make_trigger_id"]

STATE_VERSION = 1
CONTROLS: tuple[str, ...] = ("reentry", "cooldown", "cap", "quiet_hours", "superseded", "missing_feature")
"""Names of the controls counted by :meth:`TriggerEngine.suppressed`."""
_COUNTS = struct.Struct("<II")
"""A packed history's head: how many deliveries, how many re-entry records."""
_ENTRY = struct.Struct("<dH")
"""One packed delivery or re-entry record: the time (epoch seconds) and the code of the campaign or rule."""


def make_trigger_id(customer_id: str, campaign: str, cause: str | tuple[float, str, str | None]) -> str:
    """The idempotency key of a trigger: 32 hex digits of BLAKE2b.

    ``cause``: the change's cause event id or, when the change has none
    (inactivity, model), ``(event time in epoch seconds, lens, the change's new
    segment id)``; the time counts to the microsecond.

    Examples
    --------
    >>> make_trigger_id("c1", "winback", "e9")
    '34c62c96a6d1ff129b94027c59407309'
    >>> a = make_trigger_id("c1", "winback", (1.5, "value", "value-2"))
    >>> a == make_trigger_id("c1", "winback", (1.5, "value", "value-2")), len(a)
    (True, 32)
    """
    if isinstance(cause, str):
        parts: list[str] = ["event", customer_id, campaign, cause]
    else:
        event_epoch, lens, to_segment = cause
        parts = ["time", customer_id, campaign, f"{event_epoch:.6f}", lens, to_segment or ""]
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=16, person=b"seg-trigger-v1")
    return digest.hexdigest()


def _epoch(ts: str) -> float:
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _finite_features(change: SegmentChange, features: Mapping[str, float]) -> dict[str, float]:
    """The customer's finite features by name; the change's own fill in any that are missing."""
    feats = {k: float(v) for k, v in change.features.items() if math.isfinite(v)}
    feats.update({k: float(v) for k, v in features.items() if math.isfinite(v)})
    return feats


@dataclass
class _Evaluation:
    """One segment change being evaluated: its cause event, event time (epoch seconds) and features."""

    change: SegmentChange
    event: CustomerEvent | None
    at: float
    features: dict[str, float]

    @functools.cached_property
    def base(self) -> dict[str, object]:
        """The payload values every rule shares (built once, for the first rule whose conditions hold)."""
        return TriggerEngine._values(self.change, self.features, self.event)


@dataclass
class _Held:
    """A trigger waiting for the end of quiet hours."""

    at: float
    """Release time (epoch seconds)."""
    ts: float
    """Event time of the change that made it."""
    rule: str
    prev: float | None
    """The rule's re-entry record before this trigger (restored if it is cancelled)."""
    message: dict[str, Any]
    """The :class:`CampaignTrigger`, JSON-ready."""

    @property
    def trigger_id(self) -> str:
        return str(self.message["trigger_id"])

    @property
    def campaign(self) -> str:
        return str(self.message["campaign"])

    @property
    def lens(self) -> str:
        return str(self.message["lens"])

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "ts": self.ts, "rule": self.rule, "prev": self.prev, "msg": self.message}


@dataclass(slots=True)
class _Customer:
    """One customer's trigger state, while it is evaluated (held apart: :class:`_History`, :attr:`_History.held`)."""

    fired: list[tuple[float, str]] = field(default_factory=list)
    """(delivered at, campaign), for cooldowns and the cap, pruned past the longest of them."""
    last: dict[str, float] = field(default_factory=dict)
    """rule -> last delivery, while the rule is not re-armed (``always`` rules keep nothing)."""
    held: list[_Held] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.fired or self.last or self.held)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": STATE_VERSION}
        if self.fired:
            out["f"] = [[t, c] for t, c in sorted(self.fired)]
        if self.last:
            out["r"] = {k: self.last[k] for k in sorted(self.last)}
        if self.held:
            out["h"] = [h.to_json() for h in sorted(self.held, key=lambda h: (h.at, h.trigger_id))]
        return out

    @classmethod
    def from_json(cls, customer_id: str, data: Mapping[str, Any]) -> _Customer:
        try:
            if data.get("v") != STATE_VERSION:
                raise StateError(f"trigger state of {customer_id!r}: unknown version {data.get('v')!r}")
            fired = [(float(t), str(c)) for t, c in data.get("f", [])]
            last = {str(k): float(v) for k, v in data.get("r", {}).items()}
            held = []
            for h in data.get("h", []):
                msg = dict(h["msg"])
                CampaignTrigger.model_validate(msg)
                prev = h.get("prev")
                held.append(
                    _Held(
                        at=float(h["at"]),
                        ts=float(h["ts"]),
                        rule=str(h["rule"]),
                        prev=None if prev is None else float(prev),
                        message=msg,
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
            raise StateError(f"trigger state of {customer_id!r} is malformed: {exc}") from None
        times = [t for t, _ in fired] + list(last.values())
        times += [x for h in held for x in (h.at, h.ts, h.prev) if x is not None]
        if not all(math.isfinite(t) for t in times):
            raise StateError(f"trigger state of {customer_id!r} has non-finite times")
        return cls(fired=fired, last=last, held=held)


class _History:
    """Every customer's delivery history and re-entry records, packed: one ``bytes`` per customer.

    A Python :class:`_Customer` (a list of tuples, a dict, a list) costs about
    500 bytes per customer; the packed record (:data:`_COUNTS`, then
    :data:`_ENTRY` per delivery and per re-entry record, in their order) about
    60, with the dict entry and the id about 160. Campaign and rule names are
    coded by a table that only grows (rules are few). Held triggers (quiet
    hours: until the next morning) stay objects, in :attr:`held`.
    """

    def __init__(self) -> None:
        self.packed: dict[str, bytes] = {}
        self.held: dict[str, list[_Held]] = {}
        self._names: list[str] = []
        self._codes: dict[str, int] = {}

    def ids(self) -> list[str]:
        """Customers with any state, sorted."""
        return sorted(self.packed.keys() | self.held.keys())

    def get(self, customer_id: str) -> _Customer | None:
        """The customer's state (``None``: none)."""
        data = self.packed.get(customer_id)
        held = self.held.get(customer_id)
        if data is None and held is None:
            return None
        cust = _Customer(held=[] if held is None else held)
        if data is not None:
            n_fired, n_last = _COUNTS.unpack_from(data)
            entries = [(t, self._names[code]) for t, code in _ENTRY.iter_unpack(data[_COUNTS.size :])]
            cust.fired = entries[:n_fired]
            cust.last = {name: t for t, name in entries[n_fired : n_fired + n_last]}
        return cust

    def put(self, customer_id: str, cust: _Customer) -> None:
        """Store the customer's state (an empty one: forget the customer)."""
        if cust.fired or cust.last:
            entries = [(t, self._code(c)) for t, c in cust.fired] + [(t, self._code(r)) for r, t in cust.last.items()]
            self.packed[customer_id] = _COUNTS.pack(len(cust.fired), len(cust.last)) + b"".join(
                _ENTRY.pack(t, code) for t, code in entries
            )
        else:
            self.packed.pop(customer_id, None)
        if cust.held:
            self.held[customer_id] = cust.held
        else:
            self.held.pop(customer_id, None)

    def pop(self, customer_id: str) -> None:
        """Forget the customer."""
        self.packed.pop(customer_id, None)
        self.held.pop(customer_id, None)

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            if len(self._names) > 0xFFFF:
                raise StateError(f"more than {0xFFFF + 1} campaign and rule names in the trigger state")
            code = self._codes[name] = len(self._names)
            self._names.append(name)
        return code


class TriggerEngine:
    """Evaluates campaign rules on segment changes, with cooldowns, a cap, re-entry and quiet hours.

    Parameters
    ----------
    rules
        A validated :class:`~segmenter.triggers.rules.RuleSet`.

    Notes
    -----
    State is per customer (:meth:`customer_state`, small and JSON-ready, held
    triggers included, so it travels with the customer's partition) plus the
    suppression counters (:meth:`state` holds everything). After
    :meth:`release`, the customers of the returned triggers have a changed
    state.

    Examples
    --------
    >>> from segmenter.triggers.rules import rules_from_dict
    >>> from segmenter.outputs import SegmentChange, SegmentRef
    >>> rules = rules_from_dict({"rules": [{
    ...     "name": "vip", "campaign": "vip-invite", "channel": "email", "priority": 10,
    ...     "on": {"lens": "value", "enter": "*high spend*"}, "when": ["spend > 500"],
    ...     "cooldown": "30d", "reentry": {"mode": "always"},
    ...     "payload": {"spend": "{features.spend:.0f}", "segment": "{segment.name}"}}]})
    >>> engine = TriggerEngine(rules)
    >>> def change(ts, frm, to, event_id):
    ...     return SegmentChange(customer_id="c1", lens="value", from_segment=frm, to_segment=to,
    ...         cause="event", cause_event_id=event_id, event_ts=ts, model_version=1, distance=0.1,
    ...         features={"spend": 812.0}, explanation=None)
    >>> low, high = SegmentRef(id="value-1", name="low spend"), SegmentRef(id="value-2", name="high spend · frequent")
    >>> [t] = engine.evaluate(change("2026-01-05T10:00:00+00:00", low, high, "e1"), {"spend": 812.0}, None)
    >>> t.campaign, t.segment.id, t.payload, len(t.trigger_id)
    ('vip-invite', 'value-2', {'spend': '812', 'segment': 'high spend · frequent'}, 32)
    >>> engine.evaluate(change("2026-01-06T10:00:00+00:00", low, high, "e2"), {"spend": 812.0}, None)
    []
    >>> dict(engine.suppressed()["vip-invite"])
    {'cooldown': 1}
    """

    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules
        compiled = compile_rules(rules)
        self._by_name: dict[str, CompiledRule] = {c.name: c for c in compiled}
        by_lens: dict[str, list[CompiledRule]] = {}
        for c in compiled:  # already in priority order
            by_lens.setdefault(c.rule.on.lens, []).append(c)
        self._by_lens: dict[str, tuple[CompiledRule, ...]] = {k: tuple(v) for k, v in by_lens.items()}
        cap = rules.cap
        self._cap: tuple[int, float] | None = (cap.max, cap.period) if cap is not None and cap.period else None
        self._horizon = max([c.rule.cooldown for c in compiled] + [self._cap[1] if self._cap else 0.0])
        self._customers = _History()
        self._heap: list[tuple[float, str, str]] = []
        self._suppressed: dict[str, dict[str, int]] = {}
        self._watermark = -math.inf

    @property
    def rules(self) -> RuleSet:
        """The rules this engine evaluates."""
        return self._rules

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        change: SegmentChange,
        features: Mapping[str, float],
        event: CustomerEvent | None,
        floor: float | None = None,
    ) -> list[CampaignTrigger]:
        """The triggers to send now for one segment change (held ones come later from :meth:`release`).

        Parameters
        ----------
        change
            The segment change (its ``event_ts`` is the time of every control).
        features
            The customer's current features by name; ``change.features`` fill
            in any that are missing. Non-finite values count as missing.
        event
            The event that caused the change, or ``None`` (inactivity, model).
        floor
            No later change of this customer has an ``event_ts`` below this
            (epoch seconds): the delivery history older than ``floor`` minus
            the longest cooldown or cap period is dropped. The pipeline passes
            the customer's latest event time minus the allowed lateness (its
            lateness is judged per customer). ``None``: the watermark of
            :meth:`release` (every later change at or after it).
        """
        if change.cause == "erasure":
            self.erase(change.customer_id)
            return []
        rules = self._by_lens.get(change.lens)
        if not rules:
            return []
        cid = change.customer_id
        cust = self._customers.get(cid) or _Customer()
        ev = _Evaluation(change, event, _epoch(change.event_ts), _finite_features(change, features))
        self._prune(cust, self._watermark if floor is None else floor)
        self._cancel_superseded(cust, change, ev.at)
        for c in rules:
            if c.rule.reentry.mode == "after_exit" and c.name in cust.last and c.rearms(change.to_segment):
                del cust.last[c.name]
        out: list[CampaignTrigger] = []
        for c in rules:
            segment = c.segment_of(change)
            if segment is None or not self._applies(c, ev):
                continue
            trigger = self._try_fire(c, cust, ev, segment)
            if trigger is not None:
                out.append(trigger)
        self._store(cid, cust)
        return out

    def _applies(self, c: CompiledRule, ev: _Evaluation) -> bool:
        """The rule's conditions hold for the change (a condition on a feature without a value is counted)."""
        try:
            return self._conditions(c, ev.features, ev.event)
        except MissingFeatureError as exc:
            cid = ev.change.customer_id
            self._count(c.rule.campaign, "missing_feature", c.name, cid, f"feature {exc.feature!r} has no value")
            return False

    def _conditions(self, c: CompiledRule, feats: Mapping[str, float], event: CustomerEvent | None) -> bool:
        if c.event_predicates:
            if event is None:
                if c.rule.no_event == "fail":
                    return False
            elif not all(p.test_event(event) for p in c.event_predicates):
                return False
        return all(p.test_features(feats) for p in c.feature_predicates)

    @staticmethod
    def _values(change: SegmentChange, feats: Mapping[str, float], event: CustomerEvent | None) -> dict[str, object]:
        values: dict[str, object] = {f"features.{k}": v for k, v in feats.items()}

        def ref(prefix: str, r: SegmentRef | None) -> None:
            values[f"{prefix}.id"] = r.id if r is not None else ""
            values[f"{prefix}.name"] = r.name if r is not None else ""

        ref("from_segment", change.from_segment)
        ref("to_segment", change.to_segment)
        values.update(
            {
                "customer_id": change.customer_id,
                "lens": change.lens,
                "cause": change.cause,
                "event_ts": change.event_ts,
                "event.id": event.event_id if event is not None else "",
                "event.type": event.type.value if event is not None else "",
                "event.category": (event.category or "") if event is not None else "",
                "event.channel": (event.channel or "") if event is not None else "",
            }
        )
        return values

    def _blocking_control(self, c: CompiledRule, cust: _Customer, at: float) -> str | None:
        if reentry_blocks(c.rule.reentry.mode, cust.last.get(c.name), at, c.reentry_period):
            return "reentry"
        history = cust.fired + [(h.at, h.campaign) for h in cust.held]
        if cooldown_blocks(history, c.rule.campaign, at, c.rule.cooldown):
            return "cooldown"
        if self._cap is not None and cap_blocks([t for t, _ in history], at, self._cap[0], self._cap[1]):
            return "cap"
        return None

    def _try_fire(
        self, c: CompiledRule, cust: _Customer, ev: _Evaluation, segment: SegmentRef
    ) -> CampaignTrigger | None:
        rule = c.rule
        change, at = ev.change, ev.at
        cid = change.customer_id
        quiet = c.quiet is not None and c.quiet.is_quiet(at)
        hold = quiet and c.quiet is not None and c.quiet.action == "hold"
        deliver_at = c.quiet.ends_at(at) if hold and c.quiet is not None else at
        control = self._blocking_control(c, cust, deliver_at)
        if control is None and quiet and not hold:
            control = "quiet_hours"
        if control is not None:
            self._count(rule.campaign, control, c.name, cid, f"at {change.event_ts}")
            return None
        values = dict(ev.base)
        values.update(
            {
                "campaign": rule.campaign,
                "rule": rule.name,
                "channel": rule.channel,
                "segment.id": segment.id,
                "segment.name": segment.name,
            }
        )
        try:
            payload = render_payload(c.payload, values)
        except MissingFeatureError as exc:
            self._count(rule.campaign, "missing_feature", c.name, cid, f"payload needs feature {exc.feature!r}")
            return None
        to_id = change.to_segment.id if change.to_segment is not None else None
        cause = change.cause_event_id if change.cause_event_id is not None else (at, change.lens, to_id)
        trigger = CampaignTrigger(
            trigger_id=make_trigger_id(cid, rule.campaign, cause),
            customer_id=cid,
            campaign=rule.campaign,
            channel=rule.channel,
            rule=rule.name,
            lens=change.lens,
            segment=segment,
            cause_event_id=change.cause_event_id,
            event_ts=change.event_ts,
            payload=payload,
        )
        if hold and any(h.trigger_id == trigger.trigger_id for h in cust.held):
            logger.debug("rule %s: trigger %s for %s is already held", c.name, trigger.trigger_id, cid)
            return None
        prev = cust.last.get(c.name)
        if rule.reentry.mode != "always":
            cust.last[c.name] = deliver_at
        if hold:
            message = trigger.model_dump(mode="json")
            cust.held.append(_Held(at=deliver_at, ts=at, rule=c.name, prev=prev, message=message))
            heapq.heappush(self._heap, (deliver_at, cid, trigger.trigger_id))
            logger.debug("rule %s: trigger for %s held until %s (quiet hours)", c.name, cid, deliver_at)
            return None
        cust.fired.append((at, rule.campaign))
        return trigger

    def _cancel_superseded(self, cust: _Customer, change: SegmentChange, at: float) -> None:
        if not cust.held:
            return
        keep: list[_Held] = []
        for h in cust.held:
            c = self._by_name.get(h.rule)
            if c is not None and h.lens == change.lens and h.ts <= at < h.at and c.rearms(change.to_segment):
                self._count(h.campaign, "superseded", h.rule, change.customer_id, "left the segment before release")
                if h.prev is None:
                    cust.last.pop(h.rule, None)
                else:
                    cust.last[h.rule] = h.prev
                continue
            keep.append(h)
        cust.held = keep

    def _prune(self, cust: _Customer, at: float) -> None:
        # Only below the floor: every later change of this customer is at or after it,
        # so nothing older than (floor - the longest control) can matter again.
        if cust.fired and at > -math.inf:
            cust.fired = [(t, c) for t, c in cust.fired if t > at - self._horizon]
        for name in sorted(cust.last):
            c = self._by_name.get(name)
            mode = c.rule.reentry.mode if c is not None else "always"
            expired = c is not None and mode == "after_period" and cust.last[name] <= at - c.reentry_period
            if mode == "always" or expired:
                del cust.last[name]

    def _store(self, customer_id: str, cust: _Customer) -> None:
        self._customers.put(customer_id, cust)

    def _count(self, campaign: str, control: str, rule: str, customer_id: str, why: str) -> None:
        per = self._suppressed.setdefault(campaign, {})
        per[control] = per.get(control, 0) + 1
        logger.debug("rule %s suppressed for %s by %s: %s", rule, customer_id, control, why)

    # ------------------------------------------------------------------ time

    def release(self, watermark: float) -> list[CampaignTrigger]:
        """Held (quiet-hours) triggers whose release time is at or before ``watermark``.

        Ordered by release time, then customer id, then trigger id. Each
        released trigger counts as delivered at its release time. Without a
        ``floor`` in :meth:`evaluate`, the watermark also bounds the delivery
        history kept per customer, so every later change must then have
        ``event_ts >= watermark``.
        """
        self._watermark = max(self._watermark, watermark)
        out: list[CampaignTrigger] = []
        while self._heap and self._heap[0][0] <= watermark:
            at, cid, tid = heapq.heappop(self._heap)
            cust = self._customers.get(cid)
            if cust is None:
                continue
            for i, h in enumerate(cust.held):
                if h.trigger_id == tid and h.at == at:
                    del cust.held[i]
                    cust.fired.append((h.at, h.campaign))
                    out.append(CampaignTrigger.model_validate(h.message))
                    self._store(cid, cust)
                    break
        return out

    def pending(self) -> int:
        """How many triggers are held for quiet hours."""
        return sum(len(held) for held in self._customers.held.values())

    # ------------------------------------------------------------------ state

    def customer_state(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's trigger state as a small JSON-ready dict, or ``None`` if there is none."""
        cust = self._customers.get(customer_id)
        if cust is None or cust.empty():
            return None
        return cust.to_json()

    def load_customer_state(self, customer_id: str, state: dict[str, Any]) -> None:
        """Restore one customer's state (as returned by :meth:`customer_state`), replacing any.

        Raises
        ------
        StateError
            If the state is malformed or of another version.
        """
        if not isinstance(state, Mapping):
            raise StateError(f"trigger state of {customer_id!r} must be an object")
        cust = _Customer.from_json(customer_id, state)
        self._store(customer_id, cust)
        for h in cust.held:
            heapq.heappush(self._heap, (h.at, customer_id, h.trigger_id))

    def erase(self, customer_id: str) -> None:
        """Forget everything about the customer (held triggers and their heap entries included)."""
        self._customers.pop(customer_id)
        if any(entry[1] == customer_id for entry in self._heap):
            self._heap = [entry for entry in self._heap if entry[1] != customer_id]
            heapq.heapify(self._heap)

    def suppressed(self) -> Mapping[str, Mapping[str, int]]:
        """Suppressed triggers so far: campaign -> control -> count (see :data:`CONTROLS`)."""
        return {k: dict(sorted(v.items())) for k, v in sorted(self._suppressed.items())}

    def state(self) -> dict[str, Any]:
        """The whole engine state (every customer, suppression counters), JSON-ready and deterministic."""
        return {
            **self.global_state(),
            "customers": {cid: st for cid in self._customers.ids() if (st := self.customer_state(cid)) is not None},
        }

    def global_state(self) -> dict[str, Any]:
        """The engine-wide part of :meth:`state` (suppression counters, watermark), without customers.

        Cheap whatever the number of customers: the Kafka edge writes it with
        every model snapshot, while customers travel in their own changelog records.
        """
        return {
            "v": STATE_VERSION,
            "suppressed": {k: dict(v) for k, v in self.suppressed().items()},
            "watermark": self._watermark if math.isfinite(self._watermark) else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the whole engine state with one from :meth:`state`.

        Raises
        ------
        StateError
            If the state is malformed or of another version.
        """
        customers = state.get("customers", {}) if isinstance(state, Mapping) else None
        if not isinstance(customers, Mapping):
            raise StateError("trigger engine state: 'customers' must be an object")
        self.load_global_state(state)
        self._customers = _History()
        self._heap = []
        for cid in sorted(customers):
            self.load_customer_state(str(cid), customers[cid])

    def load_global_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`global_state` output; per-customer state already loaded is kept.

        Raises
        ------
        StateError
            If the state is malformed or of another version.
        """
        if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
            raise StateError("trigger engine state: not an object of a known version")
        suppressed = state.get("suppressed", {})
        if not isinstance(suppressed, Mapping):
            raise StateError("trigger engine state: 'suppressed' must be an object")
        watermark = state.get("watermark")
        if watermark is not None and not isinstance(watermark, int | float):
            raise StateError("trigger engine state: 'watermark' must be a number or null")
        try:
            counters = {str(k): {str(c): int(n) for c, n in v.items()} for k, v in suppressed.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise StateError(f"trigger engine state: bad suppression counters: {exc}") from None
        self._watermark = -math.inf if watermark is None else float(watermark)
        self._suppressed = counters
