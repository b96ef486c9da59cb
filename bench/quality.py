"""Segment quality against the simulator's ground truth, for every river algorithm a lens can select.

Five scenarios, simulated with the producer's generators (the code behind
``segmenter-producer synth --truth``), fed event by event (JSON parse
included) through :class:`segmenter.pipeline.Segmenter`:

``personas``
    The built-in personas, with arrivals and drift (20% of customers switch
    persona once). Realistic and overlapping: no target, numbers to choose by.
``separated``
    Four behaviour patterns chosen to land far apart in both default lenses
    (no drift, no arrivals), with ``k = 4`` in both lenses. Issue 3's target:
    ARI >= 0.9 against the patterns and against batch k-means, flap rate < 1%.
``sparse``
    Long-horizon retail (``synth --scenario sparse``, :mod:`producer.retail`):
    1-20 purchases per customer over 18 months, heavy-tailed amounts, monthly
    cohorts, most customers lapsing; the truth is each customer's latent type.
``btyd``
    An independent web shop (:mod:`bench.btyd`): no personas, each customer its
    own session rate, lifetime, funnel probabilities and mean order value from
    continuous "buy 'til you die" mixing distributions; shares no code or
    distribution with the simulator, so defaults are not tuned to one
    generator. Truth: value quartiles (a reference, no target).
``sparse_bad_clock``
    The same stream with one event, in the middle, dated a year ahead (the
    producer's ``bad_clock`` fault); run with the first algorithm only. Its
    ``late`` count is the number of events the core refused: the target is at
    most that one event.

Per algorithm and scenario:

* **final ARI** of the segments (after a full re-score at the end of the run)
  against each customer's final persona, per lens and for the joint label
  (value segment, engagement segment);
* **ARI against batch scikit-learn KMeans** on the same final features (each
  lens's log1p + standardisation, ``k`` = segments the lens ended with), and
  batch KMeans's own ARI against the personas (what the feature space allows);
* **prequential ARI**: each event is first scored with the segment its customer
  holds *before* the event (test, then train), against the persona that
  produced the event, per simulated day;
* **flap rate**: share of moves (cause ``event``/``inactivity``) that the
  customer reverses (back to the segment it left) within its next
  ``--flap-window`` events; moves caused by the model (merges, retirements)
  are counted separately; ``flap_gaps`` gives each flap's event time and events
  since the move it reverses, and the customer's events up to that move (the
  report's flap rows name their ranges);
* **drift following**: for customers who switched persona, the event time
  until their joint segment maps to the new persona (segment -> persona by
  majority over the prequential labels), and the share that got there; beside
  it, judged once at the end for ours and for batch k-means (each lens's k) on
  the same final features, the share of drifted customers whose joint label
  maps to their new persona: the reference, since the features' overlap of
  personas bounds what any clustering follows;
* **held labels taken apart**: the customers the move rule keeps away from
  their nearest segment at the end, by the part of the rule that holds them,
  and the SSE ratio with each part's customers at their nearest
  (:func:`bench.quality_metrics.held_metrics`).

Usage::

    python -m bench.quality --customers 300 --days 20
    python -m bench.quality --algorithms kmeans dbstream --scenarios separated
    python -m bench.quality --scenarios sparse sparse_bad_clock --sparse-customers 2000
    python -m bench.quality --pending-move-hours 96 --scenarios personas btyd
    python -m bench.quality_metrics bench/out/quality.json BEFORE.json   # the issue-13 table, before > after
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score

from bench import quality_metrics
from bench.btyd import simulate_btyd
from bench.common import (
    ALGORITHMS,
    Row,
    SimRun,
    add_common_args,
    config_for,
    save_result,
    setup_logging,
    simulate,
    simulate_sparse,
    with_bad_clock,
)
from producer.personas import Persona
from segmenter.config import SegmenterConfig
from segmenter.errors import EventError
from segmenter.events import parse_event
from segmenter.outputs import SegmentChange, SegmentLifecycle
from segmenter.pipeline import Segmenter

log = logging.getLogger("bench.quality")

DAY = 86400.0
ARI_TARGET = 0.9
FLAP_TARGET = 0.01
REVERSAL_TARGET = 0.01
REVERSAL_WINDOW_S = 7 * DAY
"""A move reversed within this much event time counts in the 7-day reversal rate."""
LONG_REVERSAL_WINDOW_S = 30 * DAY
"""The same over 30 days: sparse customers reverse after weeks, which the 7-day window does not see."""
SCENARIOS = ("personas", "separated", "sparse", "sparse_bad_clock", "btyd")


def _cats(*names: str) -> tuple[tuple[str, float], ...]:
    return tuple((n, 1.0) for n in names)


SEPARATED_PERSONAS: tuple[Persona, ...] = (
    Persona(
        name="big_spender",
        sessions_per_week=3.0,
        page_views=1.0,
        product_views=1.0,
        searches=0.0,
        cart_add_prob=0.9,
        remove_prob=0.0,
        purchase_prob=0.9,
        checkout_abandon_prob=0.0,
        mean_amount=400.0,
        amount_sigma=0.15,
        refund_prob=0.0,
        email_open_prob=0.95,
        email_click_prob=0.8,
        categories=_cats("electronics", "home"),
    ),
    Persona(
        name="small_frequent",
        sessions_per_week=7.0,
        page_views=1.0,
        product_views=1.0,
        searches=0.0,
        cart_add_prob=0.9,
        remove_prob=0.0,
        purchase_prob=0.9,
        checkout_abandon_prob=0.0,
        mean_amount=12.0,
        amount_sigma=0.15,
        refund_prob=0.0,
        email_open_prob=0.0,
        email_click_prob=0.0,
        categories=_cats("grocery"),
    ),
    Persona(
        name="occasional",
        sessions_per_week=1.5,
        page_views=1.0,
        product_views=1.0,
        searches=0.0,
        cart_add_prob=0.9,
        remove_prob=0.0,
        purchase_prob=1.0,
        checkout_abandon_prob=0.0,
        mean_amount=60.0,
        amount_sigma=0.15,
        refund_prob=0.0,
        email_open_prob=0.3,
        email_click_prob=0.0,
        categories=_cats("books"),
    ),
    Persona(
        name="browser",
        sessions_per_week=7.0,
        page_views=4.0,
        product_views=12.0,
        searches=2.0,
        cart_add_prob=0.5,
        remove_prob=0.5,
        purchase_prob=0.0,
        checkout_abandon_prob=0.5,
        mean_amount=50.0,
        amount_sigma=0.5,
        refund_prob=0.0,
        email_open_prob=0.0,
        email_click_prob=0.0,
        categories=_cats("fashion", "sports"),
    ),
)
"""Four patterns far apart in the value lens (spend, AOV, frequency) and the engagement lens."""


def simulate_scenario(scenario: str, customers: int, days: float, seed: int) -> SimRun:
    """The simulated stream of a scenario (see the module docstring)."""
    if scenario == "personas":
        return simulate(customers, days, seed)
    if scenario == "sparse":
        return simulate_sparse(customers, days, seed)
    if scenario == "btyd":
        return simulate_btyd(customers, days, seed)
    if scenario == "sparse_bad_clock":
        sim = simulate_sparse(customers, days, seed)
        return with_bad_clock(sim, len(sim) // 2)
    if scenario == "separated":
        names = [p.name for p in SEPARATED_PERSONAS]
        mix = dict.fromkeys(names, 1.0)
        return simulate(
            customers,
            days,
            seed,
            personas=SEPARATED_PERSONAS,
            initial_mix=mix,
            arrival_mix=mix,
            drift={},
            drift_share=0.0,
            arrivals_per_day=0.0,
        )
    raise ValueError(f"unknown scenario {scenario!r}")


def _lens_setting(text: str) -> tuple[str, float]:
    """``NAME=NUMBER`` from ``--lens-setting`` as a (name, value) pair."""
    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--lens-setting {text!r}: write NAME=NUMBER, e.g. min_dwell_hours=48")
    return name.strip(), float(value)


def scenario_config(scenario: str, algorithm: str, **lens_overrides: Any) -> SegmenterConfig:
    """The default config with ``algorithm`` in every lens (``k = 4`` per lens for ``separated``).

    ``lens_overrides``: lens settings applied to every lens (e.g. ``pending_move_hours``).
    """
    if scenario == "separated":
        return config_for(algorithm, k={"value": 4, "engagement": 4}, **lens_overrides)
    return config_for(algorithm, **lens_overrides)


class FlapGap(NamedTuple):
    """How far apart a flap and the move it reverses are, and how old the customer was at that move."""

    days: float
    """Event time between the two moves."""
    events: int
    """The customer's events between them."""
    age_events: int
    """The customer's events up to the move it reverses."""


class Reversal(NamedTuple):
    """What :meth:`Reversals.note` finds about a move (``gap_s`` None: it reverses nothing)."""

    flap: bool
    gap_s: float | None
    before: str | None
    """The cause of the move it reverses."""
    events: int = 0
    """The customer's events since the move it reverses."""
    age_events: int = 0
    """The customer's events up to the move it reverses."""


@dataclass
class _Trace:
    """What the evaluation loop records while the core runs."""

    day: list[int] = field(default_factory=list)
    persona: list[str] = field(default_factory=list)
    labels: list[list[str | None]] = field(default_factory=list)  # per lens
    moves: dict[str, int] = field(default_factory=Counter)
    flaps: dict[str, int] = field(default_factory=Counter)
    reversals: dict[str, int] = field(default_factory=Counter)
    reversals_30d: dict[str, int] = field(default_factory=Counter)
    model_moves: dict[str, int] = field(default_factory=Counter)
    flap_gaps: dict[str, list[FlapGap]] = field(default_factory=lambda: defaultdict(list))
    by_cause: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (lens, moves|flaps, cause)
    lifecycle: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lens, action)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    timeline: dict[str, list[tuple[float, tuple[str | None, ...]]]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Reversals:
    """Which moves reverse the customer's previous move (back to the segment it left), and how soon.

    A reversal is a *flap* when it comes within the customer's next
    ``flap_window`` events; its event-time gap decides whether it counts in
    the 7-day (and the 30-day) reversal rate.
    """

    flap_window: int
    _last: dict[tuple[int, str], tuple[str | None, int, str, float]] = field(default_factory=dict)

    def note(
        self, lens: int, customer: str, left: str | None, to: str | None, cause: str, events: int, t: float
    ) -> Reversal:
        """Record a move ``left -> to`` at the customer's ``events``-th event and event time ``t``.

        Returns
        -------
        Reversal
            (a flap, the event time since the move it reverses, that move's cause, the customer's events
            since it and up to it), or ``(False, None, None, 0, 0)`` when it reverses nothing.
        """
        prev = self._last.get((lens, customer))
        self._last[(lens, customer)] = (left, events, cause, t)
        if prev is None or prev[0] != to:
            return Reversal(False, None, None)
        return Reversal(events - prev[1] <= self.flap_window, t - prev[3], prev[2], events - prev[1], prev[1])


def _ari(a: list[Any], b: list[Any]) -> float:
    return float(adjusted_rand_score([str(x) for x in a], [str(x) for x in b]))


class _Recorder:
    """Turns the core's outputs into the trace: moves, flaps, reversals (in the moves' event time), timelines."""

    def __init__(self, lenses: list[str], drifters: set[str], half: float, flap_window: int) -> None:
        self.li_of = {name: i for i, name in enumerate(lenses)}
        self.current: list[dict[str, str | None]] = [{} for _ in lenses]
        self.n_events: Counter[str] = Counter()
        self.reversals = Reversals(flap_window)
        self.drifters = drifters
        self.half = half
        self.tr = _Trace()
        self._times: dict[str, float] = {}

    def apply(self, outputs: list[Any], t: float) -> None:
        """Record one batch of outputs, produced while the stream was at event time ``t``."""
        touched: set[str] = set()
        for m in outputs:
            if isinstance(m, SegmentLifecycle):
                self.tr.lifecycle[(m.lens, m.action)] += 1
            elif isinstance(m, SegmentChange):
                self._change(m, t)
                if m.customer_id in self.drifters:
                    touched.add(m.customer_id)
        for cid in touched:
            self.tr.timeline[cid].append((t, tuple(cur.get(cid) for cur in self.current)))

    def _at(self, event_ts: str) -> float:
        """A change's own event time (an inactivity move is stamped at the watermark, behind the stream)."""
        at = self._times.get(event_ts)
        if at is None:
            at = self._times[event_ts] = datetime.fromisoformat(event_ts).timestamp()
        return at

    def _change(self, m: SegmentChange, t: float) -> None:
        tr = self.tr
        li = self.li_of[m.lens]
        old = None if m.from_segment is None else m.from_segment.id
        new = None if m.to_segment is None else m.to_segment.id
        self.current[li][m.customer_id] = new
        if m.cause == "model":
            tr.model_moves[m.lens] += 1
            return
        if old is None or m.cause not in ("event", "inactivity"):
            return
        late = t >= self.half
        tr.moves[m.lens] += 1
        tr.by_cause[(m.lens, "late", "moves")] += late
        tr.by_cause[(m.lens, "moves", m.cause)] += 1
        at = self._at(m.event_ts)
        rev = self.reversals.note(li, m.customer_id, old, new, m.cause, self.n_events[m.customer_id], at)
        gap, before = rev.gap_s, rev.before
        if rev.flap and gap is not None:
            tr.flap_gaps[m.lens].append(FlapGap(gap / DAY, rev.events, rev.age_events))
            tr.flaps[m.lens] += 1
            tr.by_cause[(m.lens, "late", "flaps")] += late
            tr.by_cause[(m.lens, "flaps", f"{before}->{m.cause}")] += 1
        if gap is not None and gap <= REVERSAL_WINDOW_S:
            tr.reversals[m.lens] += 1
            tr.by_cause[(m.lens, "reversals", f"{before}->{m.cause}")] += 1
        if gap is not None and gap <= LONG_REVERSAL_WINDOW_S:
            tr.reversals_30d[m.lens] += 1


def _feed(sim: SimRun, seg: Segmenter, rec: _Recorder) -> dict[str, Any]:
    """Every event of ``sim`` through ``seg`` (test, then train), recording; returns the run's counters."""
    tr = rec.tr
    n_lenses = len(rec.current)
    start = sim.ts[0] if len(sim) else 0.0
    next_day = start + DAY
    refused: Counter[str] = Counter()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for i, raw in enumerate(sim.values):
        t = sim.ts[i]
        event = parse_event(raw)
        cid = event.customer_id
        tr.day.append(int((t - start) // DAY))
        tr.persona.append(sim.personas[i])
        tr.labels.append([rec.current[li].get(cid) for li in range(n_lenses)])
        rec.n_events[cid] += 1
        try:
            out = seg.process(event)
        except EventError as exc:
            refused[exc.reason] += 1
            continue
        rec.apply(out, t)
        if t >= next_day:
            next_day += DAY
            segments = {lens: {s.id: s.size for s in sizes} for lens, sizes in seg.stats().segments.items()}
            tr.sizes.append({"day": round((t - start) / DAY, 2), "segments": segments})
    wall = time.perf_counter() - t0
    end = sim.ts[-1] if len(sim) else start
    rec.apply(seg.advance_to(end, full=True), end)
    return {
        "events": len(sim),
        "late": sum(refused.values()),
        "refused_by_reason": dict(sorted(refused.items())),
        "seconds": wall,
        "cpu_seconds": time.process_time() - cpu0,
        "events_per_s": len(sim) / wall if wall > 0 else math.nan,
    }


def _by(tr: _Trace, name: str, kind: str) -> dict[str, int]:
    return {c: n for (ln, k, c), n in sorted(tr.by_cause.items()) if ln == name and k == kind}


def _batch_labels(xs: np.ndarray, k: int) -> np.ndarray:
    """scikit-learn KMeans (``n_init=10``) labels at ``k``, or one label when there are too few rows."""
    if len(xs) <= k:
        return np.zeros(len(xs))
    return np.asarray(SkKMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(xs))


def flap_gap_summary(gaps: list[FlapGap]) -> dict[str, Any]:
    """Each flap's gap (event-time days, events between) and the customer's age in events at the move it reverses.

    ``days``, ``events`` and ``age_events`` are ``[min, median, max]`` (empty without flaps); ``each`` lists
    every flap as ``[days, events, age_events]``.
    """
    out: dict[str, Any] = {"each": [[round(g.days, 3), g.events, g.age_events] for g in gaps]}
    for name in FlapGap._fields:
        xs = [float(getattr(g, name)) for g in gaps]
        out[name] = [min(xs), float(np.median(xs)), max(xs)] if xs else []
    return out


def _holds(seg: Segmenter, li: int, views: list[Any], raw: np.ndarray) -> tuple[list[str | None], list[str | None]]:
    """Each customer's nearest live segment (id) in lens ``li`` and why the move rule keeps it in another one
    (:func:`bench.quality_metrics.hold_reason`; ``None``: it holds its nearest, or no live segment)."""
    lens, store = seg.lenses[li], seg.store
    wm = seg.watermark
    now = store.to_seconds(wm) if wm is not None else 0
    nearest_ids: list[str | None] = []
    reasons: list[str | None] = []
    for view, x in zip(views, raw, strict=True):
        near = lens.assign(x, current=None, dwell=0).nearest
        row = store.row_of(view.customer_id)
        cur = -1 if row is None else store.segment(row, li)
        nearest_ids.append(None if near is None else lens.ref(near).id)
        if row is None or near is None or cur < 0 or cur == near or not lens.is_live(cur):
            reasons.append(None)
            continue
        since, prev = store.entered(row, li)
        dwell = store.dwell_of(row, li)
        reasons.append(quality_metrics.hold_reason(lens.rule, dwell=dwell, age=now - since, back=near == prev))
    return nearest_ids, reasons


def _lens_result(
    lc: Any,
    seg: Segmenter,
    li: int,
    views: list[Any],
    labels: list[str | None],
    truth: list[str],
    tr: _Trace,
    events: int,
    batch: np.ndarray,
) -> dict[str, Any]:
    """Every final measure of one lens (the ``li``-th of ``seg``); ``batch``: batch k-means's labels at its k."""
    name = lc.name
    lens = seg.lenses[li]
    X, Xs = _lens_space(lc, views)
    k = _batch_k(labels)
    moves = tr.moves[name]
    late_moves = tr.by_cause[(name, "late", "moves")]
    out: dict[str, Any] = {
        "final_ari": _ari(labels, truth),
        "ari_vs_batch": _ari(labels, list(batch)),
        "batch_k": k,
        "batch_ari_vs_truth": _ari(list(_batch_labels(Xs, len(set(truth)))), truth),
        "unassigned": sum(1 for x in labels if x is None),
        "moves": moves,
        "flaps": tr.flaps[name],
        "flap_rate": tr.flaps[name] / moves if moves else 0.0,
        "reversals_7d": tr.reversals[name],
        "reversal_rate_7d": tr.reversals[name] / moves if moves else 0.0,
        "reversals_30d": tr.reversals_30d[name],
        "reversal_rate_30d": tr.reversals_30d[name] / moves if moves else 0.0,
        "reversals_by_cause": _by(tr, name, "reversals"),
        "flap_rate_2nd_half": tr.by_cause[(name, "late", "flaps")] / max(1, late_moves),
        "moves_2nd_half": late_moves,
        "model_moves": tr.model_moves[name],
        "moves_by_cause": _by(tr, name, "moves"),
        "flaps_by_cause": _by(tr, name, "flaps"),
        "flap_gaps": flap_gap_summary(tr.flap_gaps[name]),
        "lifecycle": {a: n for (ln, a), n in sorted(tr.lifecycle.items()) if ln == name},
        "moves_per_1k_events": 1000.0 * moves / max(1, events),
        "model_moves_per_customer": tr.model_moves[name] / max(1, len(views)),
        "live_segments": len(lens.registry.live()),
        "segments_ever": len(lens.registry.segments),
        "model_version": lens.model_version,
        "profiles": [{"id": p.id, "name": p.name, "size": p.size, "z": p.z} for p in lens.profiles()],
    }
    out.update(quality_metrics.lens_metrics(list(lc.features), X, labels, lens))
    out.update(quality_metrics.held_metrics(list(lc.features), X, labels, *_holds(seg, li, views, X), lens))
    return out


def _lens_space(lc: Any, views: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The final features of lens config ``lc`` (original units) and the same in the lens's documented space
    (``log1p`` on its heavy-tailed features, z-scored): what batch k-means is run on."""
    X = np.array([[v.features[lc.name][f] for f in lc.features] for v in views], dtype=np.float64)
    heavy = [j for j, f in enumerate(lc.features) if f in lc.heavy_features]
    Xt = X.copy()
    Xt[:, heavy] = np.sign(Xt[:, heavy]) * np.log1p(np.abs(Xt[:, heavy]))
    std = Xt.std(axis=0)
    return X, (Xt - Xt.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _batch_k(labels: list[str | None]) -> int:
    """Batch k-means's k beside a lens: as many segments as the lens ended with (at least 2)."""
    return max(2, len({x for x in labels if x is not None}))


def _batch_of(lc: Any, views: list[Any], labels: list[str | None]) -> np.ndarray:
    """Batch k-means's labels of the final features in lens ``lc``'s space, at the lens's k."""
    return _batch_labels(_lens_space(lc, views)[1], _batch_k(labels))


def _followed_at_end(sim: SimRun, views: list[Any], joint: list[tuple[str | None, ...]], truth: list[str],
                     batch_labels: list[np.ndarray]) -> dict[str, Any]:  # fmt: skip
    """Drift following judged once, at the end, for ours and for batch k-means on the same final features.

    A drifted customer (its last persona came from a drift) counts as followed when its joint label maps to
    that persona, by majority over every customer's final joint label. ``batch_labels`` are each lens's batch
    k-means labels (:func:`_batch_of`, at the lens's k); their
    share is what the features allow a clustering of this population to follow (the reference for
    ``drift followed``, which the features' overlap of personas bounds).
    """
    last = {e.customer_id: e.cause for e in sorted(sim.truth, key=lambda e: e.start)}
    drifted = [i for i, v in enumerate(views) if last.get(v.customer_id) == "drift"]
    per_lens = [labels.astype(np.int64).tolist() for labels in batch_labels]
    batch: list[tuple[str | None, ...]] = [tuple(str(lab[i]) for lab in per_lens) for i in range(len(views))]

    def share(labels: list[tuple[str | None, ...]]) -> float:
        votes: dict[tuple[str | None, ...], Counter[str]] = defaultdict(Counter)
        for lab, persona in zip(labels, truth, strict=True):
            votes[lab][persona] += 1
        hits = sum(1 for i in drifted if votes[labels[i]].most_common(1)[0][0] == truth[i])
        return hits / len(drifted) if drifted else math.nan

    return {"drifted": len(drifted), "ours": share(joint), "batch": share(batch)}


def _prequential(tr: _Trace, lenses: list[str]) -> list[dict[str, Any]]:
    """Per simulated day, the ARI of the segments held before each event against the event's persona."""
    days = np.asarray(tr.day)
    preq: list[dict[str, Any]] = []
    for d in sorted(set(tr.day)):
        idx = np.flatnonzero(days == d)
        row: dict[str, Any] = {"day": int(d)}
        for li, name in enumerate(lenses):
            sel = [i for i in idx if tr.labels[i][li] is not None]
            row[name] = _ari([tr.labels[i][li] for i in sel], [tr.persona[i] for i in sel]) if len(sel) >= 50 else None
        sel = [i for i in idx if all(x is not None for x in tr.labels[i])]
        row["joint"] = (
            _ari([tuple(tr.labels[i]) for i in sel], [tr.persona[i] for i in sel]) if len(sel) >= 50 else None
        )
        row["scored_share"] = len(sel) / max(1, len(idx))
        preq.append(row)
    return preq


def _drift(sim: SimRun, tr: _Trace) -> dict[str, Any]:
    """Drift following: joint label -> persona by majority over the prequential labels."""
    votes: dict[tuple[str | None, ...], Counter[str]] = defaultdict(Counter)
    for labels_i, persona in zip(tr.labels, tr.persona, strict=True):
        if all(x is not None for x in labels_i):
            votes[tuple(labels_i)][persona] += 1
    to_persona = {lab: c.most_common(1)[0][0] for lab, c in votes.items()}
    delays: list[float] = []
    drifts = [e for e in sim.truth if e.cause == "drift"]
    for e in drifts:
        timeline = tr.timeline.get(e.customer_id, [])
        # the label held when the drift starts counts from its start (already the new persona's: delay 0)
        held = [lab for t, lab in timeline if t < e.start][-1:]
        for t, lab in [(e.start, lab) for lab in held] + [(t, lab) for t, lab in timeline if t >= e.start]:
            if to_persona.get(lab) == e.persona:
                delays.append((t - e.start) / DAY)
                break
    return {
        "drifted": len(drifts),
        "followed": len(delays),
        "followed_share": len(delays) / len(drifts) if drifts else math.nan,
        "median_days": float(np.median(delays)) if delays else math.nan,
        "p90_days": float(np.percentile(delays, 90)) if delays else math.nan,
        "delays_days": [round(x, 3) for x in delays],
    }


def run_one(sim: SimRun, config: SegmenterConfig, flap_window: int = 5) -> dict[str, Any]:
    """Feed ``sim`` through a new :class:`Segmenter` and compute every quality measure.

    Reversal gaps are measured between the moves' own event times (``event_ts``): an inactivity move is
    stamped at the watermark, which trails the stream by the lateness.

    Returns
    -------
    dict
        JSON-ready measures (see the module docstring).
    """
    seg = Segmenter(config)
    lenses = [lc.name for lc in config.lenses]
    half = (sim.ts[0] + sim.ts[-1]) / 2 if len(sim) else 0.0
    rec = _Recorder(lenses, {e.customer_id for e in sim.truth if e.cause == "drift"}, half, flap_window)
    result = _feed(sim, seg, rec)
    tr = rec.tr
    final = sim.final_persona()
    views = list(seg.customer_views())
    truth = [final.get(v.customer_id, "?") for v in views]
    joint: list[tuple[str | None, ...]] = [
        tuple(None if v.segments[lens] is None else v.segments[lens].id for lens in lenses)  # type: ignore[union-attr]
        for v in views
    ]
    result["customers"] = len(views)
    result["final_ari_joint"] = _ari(joint, truth) if views else math.nan
    per_lens = [[j[li] for j in joint] for li in range(len(config.lenses))]
    batch = [_batch_of(lc, views, per_lens[li]) for li, lc in enumerate(config.lenses)]
    result["lenses"] = {
        lc.name: _lens_result(lc, seg, li, views, per_lens[li], truth, tr, len(sim), batch[li])
        for li, lc in enumerate(config.lenses)
    }
    preq = _prequential(tr, lenses)
    result["prequential"] = preq
    second_half = [r["joint"] for r in preq[len(preq) // 2 :] if r["joint"] is not None]
    result["prequential_ari_joint_2nd_half"] = float(np.mean(second_half)) if second_half else math.nan
    result["drift"] = _drift(sim, tr)
    if views and result["drift"]["drifted"]:
        result["drift"]["at_end"] = _followed_at_end(sim, views, joint, truth, batch)
    result["sizes_over_time"] = tr.sizes
    return result


def _gaps_note(gaps: dict[str, Any]) -> str:
    """``; reversed after D0-D1 days, E0-E1 events, moves at events A0-A1`` from :func:`flap_gap_summary`."""
    if not gaps["days"]:
        return ""
    (d0, _, d1), (e0, _, e1), (a0, _, a1) = gaps["days"], gaps["events"], gaps["age_events"]
    return f"; reversed after {d0:.1f}-{d1:.1f} days and {e0:.0f}-{e1:.0f} events, of moves at events {a0:.0f}-{a1:.0f}"


def scenario_rows(scenario: str, algorithm: str, res: dict[str, Any], *, first: bool) -> list[Row]:
    """The report rows of one run: targets of the scenario; the 7-day reversal rate for the first algorithm."""
    rows: list[Row] = []
    if scenario == "separated":
        sect = f"quality: well-separated patterns ({algorithm})"
        for name, v in res["lenses"].items():
            rows += [
                Row(sect, f"{name}: ARI vs patterns", v["final_ari"], "", f">= {ARI_TARGET}",
                    passed=v["final_ari"] >= ARI_TARGET),
                Row(sect, f"{name}: ARI vs batch KMeans", v["ari_vs_batch"], "", f">= {ARI_TARGET}",
                    passed=v["ari_vs_batch"] >= ARI_TARGET),
                Row(sect, f"{name}: flap rate", v["flap_rate"], "share", f"< {FLAP_TARGET}",
                    passed=v["flap_rate"] < FLAP_TARGET,
                    note=f"{v['flaps']} of {v['moves']} moves; 2nd half of the run "
                    f"{100 * v['flap_rate_2nd_half']:.2f}% of {v['moves_2nd_half']}{_gaps_note(v['flap_gaps'])}"),
            ]  # fmt: skip
    elif scenario == "personas":
        rows.append(Row(f"quality: personas with drift ({algorithm})", "joint ARI vs personas",
                        res["final_ari_joint"], "", note="no target; see the per-algorithm table"))  # fmt: skip
        end = res["drift"].get("at_end")
        if end is not None and end["batch"] > 0:
            note = (f"of {end['drifted']} customers whose last persona came from a drift; reference: batch "
                    "k-means on the same final features (what they let a clustering follow)")  # fmt: skip
            rows.append(Row(f"quality: personas with drift ({algorithm})", "drift followed at the end",
                            end["ours"], "share", reference=end["batch"], ratio=end["ours"] / end["batch"],
                            note=note))  # fmt: skip
    elif scenario == "sparse_bad_clock":
        rows.append(Row("quality: one event dated a year ahead (sparse)", f"events refused ({algorithm})",
                        float(res["late"]), "events", "<= 1", passed=res["late"] <= 1,
                        note=f"of {res['events']:,}; by reason {res['refused_by_reason'] or 'none'}"))  # fmt: skip
    if first:
        sect = f"quality: 7-day reversal rate ({algorithm})"
        for name, v in res["lenses"].items():
            rows.append(Row(sect, f"{scenario} / {name}", v["reversal_rate_7d"], "share", f"< {REVERSAL_TARGET}",
                            passed=v["reversal_rate_7d"] < REVERSAL_TARGET,
                            note=f"{v['reversals_7d']} of {v['moves']} moves; within 30 days "
                            f"{100 * v['reversal_rate_30d']:.2f}%; flap rate (next events) "
                            f"{100 * v['flap_rate']:.2f}%"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=600, help="customers of the personas scenario")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days of the personas scenario")
    parser.add_argument("--separated-customers", type=int, default=None, help="default: --customers")
    parser.add_argument("--separated-days", type=float, default=None, help="default: --days")
    parser.add_argument("--sparse-customers", type=int, default=2000, help="customers of the sparse scenarios")
    parser.add_argument("--sparse-days", type=float, default=548.0, help="simulated days of the sparse scenarios")
    parser.add_argument("--btyd-customers", type=int, default=None, help="customers of btyd (default: --customers)")
    parser.add_argument("--btyd-days", type=float, default=45.0, help="simulated days of the btyd scenario")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--flap-window", type=int, default=5, help="customer events within which a reversal is a flap")
    parser.add_argument("--max-events", type=int, default=None, help="cut each simulated stream at this many events")
    parser.add_argument("--pending-move-hours", type=float, default=None,
                        help="every lens's pending_move_hours (default: the config's)")  # fmt: skip
    parser.add_argument("--lens-setting", action="append", default=[], metavar="NAME=NUMBER",
                        help="another lens setting for every lens, e.g. min_dwell_hours=48 (repeatable)")  # fmt: skip
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    sizes = {
        "personas": (args.customers, args.days),
        "separated": (args.separated_customers or args.customers, args.separated_days or args.days),
        "sparse": (args.sparse_customers, args.sparse_days),
        "sparse_bad_clock": (args.sparse_customers, args.sparse_days),
        "btyd": (args.btyd_customers or args.customers, args.btyd_days),
    }
    data: dict[str, Any] = {
        "params": {"flap_window": args.flap_window, "seed": args.seed, "algorithms": args.algorithms, "scenarios": {}},
        "runs": {},
    }
    rows: list[Row] = []
    overrides: dict[str, float] = {}
    if args.pending_move_hours is not None:
        overrides["pending_move_hours"] = args.pending_move_hours
    overrides.update(_lens_setting(text) for text in args.lens_setting)
    data["params"]["lens_overrides"] = overrides
    for scenario in args.scenarios:
        customers, days = sizes[scenario]
        sim = simulate_scenario(scenario, customers, days, args.seed)
        if args.max_events is not None:
            sim.values, sim.keys = sim.values[: args.max_events], sim.keys[: args.max_events]
            sim.ts, sim.personas = sim.ts[: args.max_events], sim.personas[: args.max_events]
        data["params"]["scenarios"][scenario] = {
            **sim.config,
            "events": len(sim),
            "customers_total": sim.customers,
            "drifts": sim.drifts,
        }
        log.info("%s: %d events, %d customers, %d drifts", scenario, len(sim), sim.customers, sim.drifts)
        data["runs"][scenario] = {}
        # the bad-clock variant measures the clock, not the algorithm: the first algorithm only
        algorithms = args.algorithms[:1] if scenario == "sparse_bad_clock" else args.algorithms
        for algorithm in algorithms:
            started = time.perf_counter()
            res = run_one(sim, scenario_config(scenario, algorithm, **overrides), args.flap_window)
            data["runs"][scenario][algorithm] = res
            log.info(
                "%s/%s: joint ARI %.3f, %s, %.0f events/s, %.1f s",
                scenario,
                algorithm,
                res["final_ari_joint"],
                ", ".join(
                    f"{n} ARI {v['final_ari']:.3f} vs batch {v['ari_vs_batch']:.3f} flaps {v['flap_rate']:.3%} "
                    f"7-day reversals {v['reversal_rate_7d']:.3%}"
                    for n, v in res["lenses"].items()
                ),
                res["events_per_s"],
                time.perf_counter() - started,
            )
            rows += scenario_rows(scenario, algorithm, res, first=algorithm == args.algorithms[0])
    rows += quality_metrics.target_rows(data["runs"])
    save_result("quality", data, rows, args.out)
    for r in rows:
        print(
            f"{r.section:<48} {r.metric:<32} {r.measured:8.3f} {r.target:>8} "
            f"{'' if r.passed is None else ('pass' if r.passed else 'FAIL')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
