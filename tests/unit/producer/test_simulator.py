"""The simulator: determinism, validity, persona statistics, truth timelines."""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest

from producer.personas import DEFAULT_PERSONAS, LOYAL_HIGH_VALUE, Persona, parse_mix
from producer.simulator import DAY, SimConfig, SimEvent, Simulator, encoded, iso
from segmenter.events import EventType, validate_event

START = datetime(2026, 3, 1, tzinfo=UTC)


def _events(config: SimConfig) -> tuple[Simulator, list[SimEvent]]:
    sim = Simulator(config)
    return sim, list(sim.events())


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    config = SimConfig(customers=60, days=20, seed=11, start=START, drift_share=0.5, arrivals_per_day=2)
    first = [o.value for o in encoded(Simulator(config))]
    second = [o.value for o in encoded(Simulator(config))]
    other = [o.value for o in encoded(Simulator(SimConfig(customers=60, days=20, seed=12, start=START)))]
    assert len(first) > 1000
    assert first == second
    assert first != other


def test_events_are_valid_ordered_and_inside_the_window() -> None:
    config = SimConfig(customers=80, days=30, seed=3, start=START, arrivals_per_day=3)
    _, events = _events(config)
    times = [e.ts for e in events]
    assert times == sorted(times)
    assert config.start_epoch <= times[0] and times[-1] < config.end_epoch
    types = Counter(e.event["type"] for e in events)
    # every behaviour the brief asks for is present
    expected = set(EventType) - {EventType.ERASURE_REQUEST}
    assert {EventType(t) for t in types} == expected
    ids = [e.event["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    # validate a sample through the real contract, including every monetary event
    sample = events[::97] + [e for e in events if e.event["type"] in ("purchase", "refund", "signup")][:300]
    for e in sample:
        parsed = validate_event(e.event)
        assert parsed.ts.timestamp() == pytest.approx(e.ts, abs=1e-3)
        assert parsed.customer_id.encode() == e.key


def test_refunds_follow_a_purchase_of_the_same_amount() -> None:
    _, events = _events(SimConfig(customers=150, days=40, seed=5, start=START))
    purchases = defaultdict(list)
    for e in events:
        if e.event["type"] == "purchase":
            purchases[e.event["customer_id"]].append((e.ts, e.event["amount"]))
        elif e.event["type"] == "refund":
            earlier = [a for t, a in purchases[e.event["customer_id"]] if t <= e.ts - 2 * DAY]
            assert e.event["amount"] in earlier


def _single(persona: Persona, customers: int, days: float, seed: int = 7) -> list[SimEvent]:
    config = SimConfig(
        customers=customers,
        days=days,
        seed=seed,
        start=START,
        drift_share=0.0,
        arrivals_per_day=0,
        initial_mix={persona.name: 1.0},
    )
    return _events(config)[1]


@pytest.mark.parametrize(
    "persona", [p for p in DEFAULT_PERSONAS if p.activity_half_life_days is None], ids=lambda p: p.name
)
def test_persona_statistics_match_their_parameters(persona: Persona) -> None:
    customers, days = 150, 56
    events = _single(persona, customers, days)
    counts = Counter(e.event["type"] for e in events)
    sessions = counts["session_start"]
    # sessions: Poisson process of the persona's rate (gaps start after a session ends: minutes, negligible)
    expected_sessions = customers * days / 7 * persona.sessions_per_week
    assert sessions == pytest.approx(expected_sessions, rel=0.08)
    # purchases per session: binomial, within 4 standard deviations
    p = persona.purchase_prob
    sd = math.sqrt(sessions * p * (1 - p))
    assert abs(counts["purchase"] - sessions * p) < 4 * sd + 3
    # product views per session (plus the one forced for a purchase without a cart add)
    assert counts["product_view"] / sessions == pytest.approx(persona.product_views, rel=0.1, abs=0.1)
    # log-normal amounts: mean within 4 standard errors
    amounts = [e.event["amount"] for e in events if e.event["type"] == "purchase"]
    if len(amounts) >= 30:
        mean = sum(amounts) / len(amounts)
        sigma_amount = persona.mean_amount * math.sqrt(math.exp(persona.amount_sigma**2) - 1)
        assert abs(mean - persona.mean_amount) < 4 * sigma_amount / math.sqrt(len(amounts))
        assert min(amounts) > 0
    # e-mail opens: 2 e-mails a week per customer, each opened with the persona's probability
    opens = counts["email_open"]
    expected_opens = customers * days / 7 * 2.0 * persona.email_open_prob
    assert abs(opens - expected_opens) < 4 * math.sqrt(expected_opens) + 3


def test_lapsing_customers_fade_away() -> None:
    lapsing = next(p for p in DEFAULT_PERSONAS if p.name == "lapsing")
    events = _single(lapsing, 300, 60)
    middle = START.timestamp() + 30 * DAY
    first = sum(1 for e in events if e.event["type"] == "session_start" and e.ts < middle)
    second = sum(1 for e in events if e.event["type"] == "session_start" and e.ts >= middle)
    assert first > 200
    # half-life 10 days: the second month has roughly 2**-3 of the first month's sessions
    assert second < first / 4


def test_personas_differ_in_the_segmenter_features() -> None:
    by_name = {p.name: p for p in DEFAULT_PERSONAS}
    assert len(by_name) >= 5
    loyal, bargain, window = by_name["loyal_high_value"], by_name["bargain_hunter"], by_name["window_shopper"]
    assert loyal.mean_amount == max(p.mean_amount for p in DEFAULT_PERSONAS)  # aov, spend
    assert loyal.purchase_prob == max(p.purchase_prob for p in DEFAULT_PERSONAS)  # frequency
    assert bargain.mean_amount == min(p.mean_amount for p in DEFAULT_PERSONAS)
    assert bargain.email_click_prob == max(p.email_click_prob for p in DEFAULT_PERSONAS)  # email engagement
    assert bargain.refund_prob == max(p.refund_prob for p in DEFAULT_PERSONAS)  # refund rate
    assert window.purchase_prob == min(p.purchase_prob for p in DEFAULT_PERSONAS)  # conversion, abandonment
    assert window.product_views == max(p.product_views for p in DEFAULT_PERSONAS)
    assert [p.name for p in DEFAULT_PERSONAS if p.activity_half_life_days] == ["lapsing"]  # recency grows


def test_truth_timeline_is_consistent_with_the_events() -> None:
    config = SimConfig(customers=120, days=45, seed=21, start=START, drift_share=0.5, arrivals_per_day=4)
    sim, events = _events(config)
    timeline: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for entry in sim.truth:
        timeline[entry.customer_id].append((entry.start, entry.persona, entry.cause))
    assert len(timeline) == sim.customer_count
    # every customer in the events has a truth entry
    assert {e.event["customer_id"] for e in events} <= set(timeline)
    drifts = [t for t in sim.truth if t.cause == "drift"]
    assert sim.drifts == len(drifts) > 20
    for cid, steps in timeline.items():
        assert steps == sorted(steps)
        assert steps[0][2] in ("initial", "arrival")
        assert all(cause == "drift" for _, _, cause in steps[1:])
        assert all(a[1] != b[1] for a, b in itertools.pairwise(steps)), cid
    for entry in drifts:
        assert config.start_epoch < entry.start < config.end_epoch
    # arrivals: the signup event is at the truth's moment
    signups = {e.event["customer_id"]: e.ts for e in events if e.event["type"] == "signup"}
    arrivals = {t.customer_id: t.start for t in sim.truth if t.cause == "arrival"}
    assert signups.keys() == arrivals.keys()
    assert all(signups[c] == arrivals[c] for c in signups)
    # drift moments match: each session and e-mail is produced by the persona the truth says holds then
    checked = 0
    for e in events:
        if e.event["type"] in ("session_start", "signup", "email_open"):
            steps = timeline[e.event["customer_id"]]
            i = bisect.bisect_right([s[0] for s in steps], e.ts) - 1
            if e.event["type"] == "email_open":
                continue  # opened up to hours after the e-mail arrived; persona is that of the arrival
            assert steps[i][1] == e.persona
            checked += 1
    assert checked > 1000


def test_drifting_customers_change_behaviour_at_the_truth_moment() -> None:
    # everyone is loyal and drifts to lapsing: sessions after the drift are far sparser
    config = SimConfig(
        customers=200,
        days=60,
        seed=2,
        start=START,
        drift_share=1.0,
        arrivals_per_day=0,
        initial_mix={"loyal_high_value": 1.0},
    )
    sim, events = _events(config)
    drift_at = {t.customer_id: t.start for t in sim.truth if t.cause == "drift"}
    assert len(drift_at) == 200
    before = after = 0.0
    span_before = span_after = 0.0
    for cid, t in drift_at.items():
        span_before += t - config.start_epoch
        span_after += config.end_epoch - t
        del cid
    for e in events:
        if e.event["type"] == "session_start":
            if e.ts < drift_at[e.event["customer_id"]]:
                before += 1
            else:
                after += 1
    rate_before = before / span_before * 7 * DAY
    rate_after = after / span_after * 7 * DAY
    assert rate_before == pytest.approx(LOYAL_HIGH_VALUE.sessions_per_week, rel=0.1)
    assert rate_after < rate_before / 3


def test_truth_lines_have_the_documented_fields() -> None:
    sim = Simulator(SimConfig(customers=3, days=5, seed=1, start=START))
    for _ in sim.events():
        pass
    line = orjson.loads(orjson.dumps(sim.truth[0].to_json()))
    assert line == {
        "customer_id": "c0000000",
        "persona": line["persona"],
        "from": iso(START.timestamp()),
        "cause": "initial",
    }
    assert datetime.fromisoformat(line["from"]) == START


def test_events_can_be_consumed_only_once() -> None:
    sim = Simulator(SimConfig(customers=2, days=2, seed=1, start=START))
    list(sim.events())
    with pytest.raises(RuntimeError, match="only once"):
        list(sim.events())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"customers": -1}, "customers"),
        ({"days": 0}, "days"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"start": datetime(2026, 1, 1)}, "timezone"),  # naive on purpose
        ({"initial_mix": {"nobody": 1.0}}, "unknown personas"),
        ({"arrivals_per_day": -2.0}, "arrivals_per_day"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SimConfig(**kwargs)  # type: ignore[arg-type]


def test_parse_mix() -> None:
    assert parse_mix("lapsing=2,new_explorer=0") == {"lapsing": 2.0, "new_explorer": 0.0}
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        parse_mix("vip=1")
    with pytest.raises(ValueError, match=">= 0"):
        parse_mix("lapsing=-1")
    with pytest.raises(ValueError, match="positive"):
        parse_mix("lapsing=0")


def test_new_customers_explore_right_after_signing_up() -> None:
    config = SimConfig(customers=0, days=20, seed=9, start=START, arrivals_per_day=20, drift_share=0)
    _, events = _events(config)
    signup: dict[str, float] = {}
    delays = []
    for e in events:
        cid = e.event["customer_id"]
        if e.event["type"] == "signup":
            signup[cid] = e.ts
        elif e.event["type"] == "session_start" and cid in signup:
            delays.append(e.ts - signup.pop(cid))
    assert len(delays) > 300
    assert sorted(delays)[len(delays) // 2] < 3600


def test_personas_separate_in_feature_terms() -> None:
    config = SimConfig(customers=500, days=42, seed=13, start=START, drift_share=0, arrivals_per_day=0)
    sim, events = _events(config)
    persona_of = {t.customer_id: t.persona for t in sim.truth}
    per: dict[str, Counter[str]] = defaultdict(Counter)
    spend: dict[str, float] = defaultdict(float)
    late_window = config.end_epoch - 14 * DAY
    for e in events:
        p = persona_of[e.event["customer_id"]]
        per[p][e.event["type"]] += 1
        if e.event["type"] == "purchase":
            spend[p] += e.event["amount"]
        if e.event["type"] == "session_start" and e.ts >= late_window:
            per[p]["late_sessions"] += 1
    customers = Counter(persona_of.values())

    def feature(name: str) -> dict[str, float]:
        out = {}
        for p, c in per.items():
            out[p] = {
                "aov": spend[p] / max(c["purchase"], 1),
                "conversion": c["purchase"] / c["product_view"],
                "abandonment": 1 - c["purchase"] / c["add_to_cart"],
                "email": (c["email_open"] + 2 * c["email_click"]) / customers[p],
                "views": c["product_view"] / customers[p],
                "recent": c["late_sessions"] / customers[p],
            }[name]
        return out

    def top(name: str) -> str:
        values = feature(name)
        return max(values, key=values.__getitem__)

    def bottom(name: str) -> str:
        values = feature(name)
        return min(values, key=values.__getitem__)

    assert len(per) == 5
    assert top("aov") == "loyal_high_value" and bottom("aov") == "bargain_hunter"
    assert top("conversion") == "loyal_high_value" and bottom("conversion") == "window_shopper"
    assert top("abandonment") == "window_shopper"
    assert top("email") == "bargain_hunter" and bottom("email") == "lapsing"
    assert top("views") == "window_shopper"
    assert bottom("recent") == "lapsing"
