"""``Lens``: one named segmentation, the facade of the lens package.

Data flow for one customer vector (original units, the lens's features in order)::

    observe(raw)  -> (sampled) signed log1p + Welford scaler -> micro-batch -> river model
                  -> every `refresh_every` learnt samples: model centers -> registry
                     (stable ids, lifecycle) -> names -> lifecycle messages
    assign(raw, current, dwell) -> scaled with a frozen scaler snapshot -> nearest live
                     segment center with hysteresis (compiled, the event loop's rule) -> Assignment
    refine(sample_raw) -> Lloyd iterations seeded from the segment centers on a
                     sample of current customers; pushed back into k-means models

Examples
--------
>>> import numpy as np
>>> from segmenter.lenses.config import LensConfig
>>> cfg = LensConfig(name="value", features=["frequency", "spend"], algorithm="kmeans",
...                  params={"n_clusters": 2, "halflife": 0.1}, warmup=50, refresh_every=64)
>>> lens = Lens(cfg, seed=42)
>>> rng = np.random.default_rng(0)
>>> messages = []
>>> for i in range(400):
...     base = np.array([1.0, 20.0]) if i % 2 else np.array([12.0, 900.0])
...     messages += lens.observe(base * rng.uniform(0.8, 1.2, 2))
>>> lens.ready, sorted({m.action for m in messages})
(True, ['born'])
>>> a = lens.assign(np.array([12.0, 950.0]), current=None, dwell=0)
>>> b = lens.assign(np.array([1.1, 18.0]), current=None, dwell=0)
>>> a.segment != b.segment, a.moved
(True, True)
>>> lens.ref(a.segment).name
'high spend · frequent'
>>> lens.assign(np.array([1.1, 18.0]), current=a.segment, dwell=0).segment == a.segment   # min_dwell
True
"""

from __future__ import annotations

import dataclasses
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmenter.errors import StateError
from segmenter.explanations import Explainer
from segmenter.lenses.config import LensConfig
from segmenter.lenses.growth import grown
from segmenter.lenses.hysteresis import Hysteresis, distance, guard_s, holds_ahead, nearest_with_hysteresis
from segmenter.lenses.lloyd import REFINE_TOL, batch_kmeans, lloyd, lloyd_sse, nearest
from segmenter.lenses.models import ClusterModel, make_model, n_clusters_of
from segmenter.lenses.naming import SegmentProfile, unique_names
from segmenter.lenses.quality import (
    RESTART_CHECK_EVERY,
    RESTART_RATIO,
    SCREEN_RATIO,
    Assessment,
    LensQuality,
    fewer_segments,
    matched,
    merged_into,
    restart_pays,
    screen,
    sse_rose,
)
from segmenter.lenses.registry import LifecycleEvent, SegmentRegistry
from segmenter.lenses.scaling import OnlineScaler, ScalerSnapshot, all_finite
from segmenter.lenses.summary import SummaryFollower
from segmenter.lenses.surrogate import LazyRules, SegmentRule, fit_rows
from segmenter.outputs import Explanation, SegmentLifecycle, SegmentRef

__all__ = ["Assignment", "Lens"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
WARMUP_N_INIT = 10
"""k-means++ starts of the first segments' batch k-means (on the warm-up buffer)."""
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Assignment:
    """Result of :meth:`Lens.assign`.

    Attributes
    ----------
    segment
        Stable segment number after hysteresis (None before warm-up).
    nearest
        Nearest segment ignoring hysteresis.
    distance
        Distance to ``segment`` in scaled space.
    moved
        ``segment != current``.
    """

    segment: int | None
    nearest: int | None
    distance: float | None
    moved: bool


class Lens:
    """One segmentation: scaler, river model, segment registry, names and hysteresis.

    Parameters
    ----------
    config
        The lens settings.
    seed
        Top-level seed; the model seed is derived from it and the lens name
        (``zlib.crc32``), so lenses do not share random streams.

    Notes
    -----
    Pure and deterministic: no clock, no environment, no global state; the
    same config, seed and call sequence give the same results, and
    :meth:`state` / :meth:`load_state` restore a lens exactly. Sampling is
    counter based: during warm-up every observation is buffered; after it every
    ``learn_every``-th one is learnt (every one while the model has no
    centers yet).

    Examples
    --------
    >>> import numpy as np
    >>> from segmenter.lenses.config import LensConfig
    >>> cfg = LensConfig(name="eng", features=["sessions", "conversion"], algorithm="kmeans",
    ...                  params={"n_clusters": 2}, warmup=40)
    >>> lens = Lens(cfg, seed=1)
    >>> for i in range(40):
    ...     _ = lens.observe(np.array([30.0, 0.3]) if i % 2 else np.array([1.0, 0.0]))
    >>> lens.ready, lens.model_version, [p.id for p in lens.profiles()]
    (True, 1, ['eng-1', 'eng-2'])
    >>> seg = lens.assign(np.array([25.0, 0.25]), current=None, dwell=0).segment
    >>> lens.ref(seg).name
    'high conversion · many sessions'
    """

    def __init__(self, config: LensConfig, seed: int) -> None:
        self.config = config
        self.name: str = config.name
        self.feature_names: tuple[str, ...] = tuple(config.features)
        self.model_version = 0
        self.seed = zlib.crc32(f"{seed}:{config.name}".encode()) & 0x7FFFFFFF
        self._dim = len(self.feature_names)
        self._scaler = OnlineScaler(self.feature_names, config.heavy_features)
        self._model: ClusterModel = make_model(config.algorithm, config.params, self._dim, self.seed)
        self._registry = SegmentRegistry(config.match_threshold, config.retire_after, config.max_segments)
        # the move rule's parameters (nearest_with_hysteresis)
        self.rule = Hysteresis(
            margin=config.margin,
            min_dwell=config.min_dwell,
            min_dwell_s=round(config.min_dwell_hours * 3600),
            dwell_time_s=round(config.min_dwell_days * 86_400) if config.min_dwell_days else math.inf,
            return_window_s=round(config.return_window_days * 86_400),
            return_margin=config.return_margin,
            hold_s=round(config.pending_move_hours * 3600) if config.pending_move_hours else math.inf,
            shrink=config.margin_shrinks,
        ).params()
        self._heavy = self._scaler.heavy_index
        self._n_obs = 0
        self._warm: list[list[float]] = []
        self._batch: list[list[float]] = []
        self._learned_since_refresh = 0
        self._ready = False
        self._snapshot: ScalerSnapshot | None = None
        self._model_map: dict[int, int] = {}
        self._cache_epoch = 0
        self._assessment: Assessment | None = None  # the last refinement's, computed when read (quality)
        self._refinements = 0
        self._checked_sse: float | None = None  # SSE per customer after the last restart check (sse_rose)
        self._refined = False
        self._rules: LazyRules | None = None  # each fitted on first use
        self._with_rules = False
        self._rebuild_caches()

    # --- properties --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Warm-up done and segments exist: assignments may be emitted."""
        return self._ready

    @property
    def n_observed(self) -> int:
        """Observations so far."""
        return self._n_obs

    @property
    def model(self) -> ClusterModel:
        """The underlying model adapter (read-only use)."""
        return self._model

    @property
    def registry(self) -> SegmentRegistry:
        """The segment registry (read-only use)."""
        return self._registry

    @property
    def quality(self) -> LensQuality | None:
        """SSE ratio against batch k-means and silhouette at the last refinement (None before one).

        Measured on the rows that refinement kept, the first time it is read (a refinement itself computes
        only its restart check when one is due, :data:`~segmenter.lenses.quality.RESTART_CHECK_EVERY`).
        """
        return None if self._assessment is None else self._assessment.quality()

    @property
    def rules(self) -> dict[int, SegmentRule]:
        """Segment number -> its rule, fitted at the last refinement (live segments; empty before one)."""
        rules = {} if self._rules is None else self._rules.all()
        return {n: r for n, r in rules.items() if self._registry.is_live(n)}

    @property
    def snapshot(self) -> ScalerSnapshot | None:
        """The scaler snapshot that defines the current scaled space (None before the first refresh)."""
        return self._snapshot

    # --- learning ----------------------------------------------------------------------------

    def observe(self, raw: np.ndarray) -> list[SegmentLifecycle]:
        """Feed one customer's current raw feature vector.

        Cheap on most calls (a counter and a finiteness check); every sampled
        vector is transformed, added to the scaler and buffered; a full buffer
        is learnt; a refresh matches the model's centers to the registry.

        Returns
        -------
        list of SegmentLifecycle
            Lifecycle messages of a refresh (born/merged/split/retired/renamed), usually empty.

        Raises
        ------
        ValueError
            On a non-finite value or a vector of the wrong length.
        """
        values = raw.tolist()
        total = sum(values)
        if total - total != 0.0 and not all_finite(values):
            raise ValueError(f"lens {self.name!r}: non-finite feature value in {values!r}")
        self._n_obs += 1
        n = self._n_obs
        if not self.sampled(n):
            return []
        return self._learn_samples(np.array([values], np.float64), [n])

    def sampled(self, n: int) -> bool:
        """Whether the ``n``-th observation is learnt: all of the warm-up, then every ``learn_every``-th.

        Every one is learnt while the lens is not ready (the model has no centers yet).
        """
        return n <= self.config.warmup or not self._ready or n % self.config.learn_every == 0

    def take_samples(self, samples: np.ndarray, numbers: np.ndarray, n_observed: int) -> list[SegmentLifecycle]:
        """Learn sampled observations counted elsewhere (by :mod:`segmenter.kernel`), in order.

        ``samples`` holds the raw vectors of the observations numbered
        ``numbers`` (each one for which :meth:`sampled` was true);
        ``n_observed`` is the observation count after the last of them. Same
        effect as the :meth:`observe` calls they stand for; only the last
        sample may complete the warm-up or a micro-batch.
        """
        messages = self._learn_samples(samples, numbers.tolist()) if len(samples) else []
        self._n_obs = n_observed
        return messages

    def _learn_samples(self, raw: np.ndarray, numbers: list[int]) -> list[SegmentLifecycle]:
        """Learn sampled observations (see :meth:`sampled`): scaler, warm-up or micro-batch buffer, refresh."""
        transformed, scaled = self._scaler.learn(raw)
        warmup = self.config.warmup
        if numbers[0] <= warmup:
            if numbers[-1] > warmup:
                raise RuntimeError(f"lens {self.name!r}: samples past the end of the warm-up in one hand-over")
            self._warm.extend(transformed.tolist())
            if numbers[-1] < warmup:
                return []
            snap = self._scaler.snapshot()
            self._model.learn_many(snap.scale_matrix(np.asarray(self._warm)))
            return self._refresh()
        self._batch.extend(scaled.tolist())
        if len(self._batch) < self.config.batch_size:
            return []
        if len(self._batch) > self.config.batch_size:
            raise RuntimeError(f"lens {self.name!r}: more samples than one micro-batch in one hand-over")
        self._model.learn_many(np.asarray(self._batch))
        self._learned_since_refresh += len(self._batch)
        self._batch = []
        if not self._ready or self._learned_since_refresh >= self.config.refresh_every:
            return self._refresh()
        return []

    def kernel_view(self) -> tuple[list[int], list[list[float]], list[float], list[float], list[bool]]:
        """What the compiled assignment needs: live numbers, their scaled centers, ``1/std``, ``mean/std``, heavy flags.

        The same cached values :meth:`assign` uses (frozen between refreshes).
        """
        return self._live, self._centers, self._inv, self._offset, list(self._scaler.heavy)

    @property
    def cache_epoch(self) -> int:
        """Bumped whenever the cached assignment values (:meth:`kernel_view`, readiness) change."""
        return self._cache_epoch

    @property
    def pending_batch(self) -> int:
        """Scaled samples waiting for the next micro-batch."""
        return len(self._batch)

    def _refresh(self) -> list[SegmentLifecycle]:
        """Read the model's centers and match them to the registry (or derive segments from its summary)."""
        self._learned_since_refresh = 0
        if self._ready and self._model.summarises:
            return self._derive_from_summary()
        centers = self._model.centers()
        if not len(centers):
            logger.debug("lens %s: model has no centers yet", self.name)
            return []
        weights = self._model.weights()
        total = float(weights.sum())
        index = np.arange(len(centers))
        if total > 0.0:
            index = index[weights >= self.config.min_cluster_share * total]
        order = index[np.argsort(-weights[index], kind="stable")][: self.config.max_segments]
        snap = self._scaler.snapshot()
        cs = centers[order]
        src = order
        if not self._ready and self._warm:
            cs, src = self._initial_centers(cs, src, snap)
        continuity = None
        if self._model.stable_indices and self._ready:
            position = {int(index): j for j, index in enumerate(src)}
            continuity = {position[i]: n for i, n in self._model_map.items() if i in position}
        result = self._registry.update(cs, snap, continuity, stay_room=self._stay_room())
        if self._snapshot is None:
            self._snapshot = snap
        self._model_map = {int(src[j]): number for j, number in result.mapping.items()}
        if not self._ready and self._registry.live():
            self._ready = True
            self._warm = []
        return self._publish(list(result.events))

    def _stay_room(self) -> int | None:
        """Between refinements, a refined k-means lens's segments follow the model, the lifecycle waits.

        Matched segments move with the model's centers as before, but none merges, misses or retires until
        the next refinement judges it against the population: re-matching to an online model that weighs
        events, not customers, retired and re-bore segments a few versions apart (on a sparse 18-month replay
        21 of 25 value retirements, and 67,895 of 215,666 segment changes; docs/internals.md, "Lens refresh").
        A model center that continues no segment is born only while the lens holds fewer segments than its
        ``k`` (a warm-up that found fewer groups): the births it has room for (``stay_room`` of
        :meth:`SegmentRegistry.update`); ``None`` before the first refinement (the full lifecycle).
        """
        if not self._refined:
            return None
        k = n_clusters_of(self.config.algorithm, self.config.params) or 0
        return max(k - len(self._registry.live()), 0)

    def _derive_from_summary(self) -> list[SegmentLifecycle]:
        """Segments from the model's micro-clusters: weighted Lloyd steps seeded from the live segments.

        The same machinery for every summarising model (STREAMKMeans, DenStream, DBSTREAM,
        CluStream; :class:`~segmenter.lenses.summary.SummaryFollower`), so segment ids do not
        churn when the model renumbers or re-clusters: before the first refinement segments
        follow the summary; after it they stay where the last refinement left them (nothing
        to publish), and only the population (a refinement) moves, retires, merges or adds them.
        """
        mcs, w = self._model.micro_clusters()
        live = self._registry.live()
        if not len(mcs) or not live:
            return []
        snap = self._scaler.snapshot()
        segs = [self._registry.segments[n] for n in live]
        scaled = self._follower().follow(mcs, w, segs, snap)
        if scaled is None:  # refined segments stay where the refinement left them
            return []
        events, _ = self._registry.set_centers(live, scaled, snap, merge_within=0.0)
        return self._publish(list(events))

    def _follower(self) -> SummaryFollower:
        cfg = self.config
        return SummaryFollower(cfg.match_threshold, cfg.refine_iterations, cfg.retire_after, cfg.min_cluster_share)

    def _initial_centers(self, cs: np.ndarray, src: np.ndarray, snap: ScalerSnapshot) -> tuple[np.ndarray, np.ndarray]:
        """First segments: batch k-means on the warm-up buffer, so that births are not mere noise.

        Models with a ``k`` get batch k-means (best of :data:`WARMUP_N_INIT`
        k-means++ starts: their random initial centers are meaningless, and a
        bad start would be kept by every later warm-started step); k-means
        models get the result pushed back; density models keep their clusters
        as seeds of Lloyd steps. Near-duplicate centers are dropped.
        Returns the centers and, per center, the model index it stands for.
        """
        warm = snap.scale_matrix(np.asarray(self._warm))
        k = n_clusters_of(self.config.algorithm, self.config.params)
        if k is not None:
            cs, _, _ = batch_kmeans(warm, k, np.random.default_rng([self.seed, 0]), n_init=WARMUP_N_INIT)
            src = np.arange(len(cs))
        else:
            cs, _ = lloyd(warm, cs, self.config.refine_iterations)
        keep: list[int] = []
        for i in range(len(cs)):
            if all(np.linalg.norm(cs[i] - cs[j]) >= self.config.match_threshold / 2.0 for j in keep):
                keep.append(i)
        cs, src = cs[keep], src[keep]
        if self._model.can_push:
            self._model.push_centers({int(src[i]): cs[i] for i in range(len(cs))})
        return cs, src

    # --- refinement --------------------------------------------------------------------------

    def refine(self, sample_raw: np.ndarray) -> list[SegmentLifecycle]:
        """Batch-refine the segment centers against the current customers (rows, original units).

        The scaled space becomes the population's own (``log1p`` where heavy,
        then the rows' mean and std: the space batch k-means would use), then
        Lloyd (batch k-means) iterations seeded from the live segment centers;
        segments whose refined centers collapse within half the match threshold
        merge (the older survives). For KMeans and STREAMKMeans the refined
        centers are written back into the river model, so the online model
        continues from them. Between refinements the scaled space stays fixed
        (the model's own scaler keeps learning). No-op (``[]``) before the lens
        is ready or on an empty sample.

        Raises
        ------
        ValueError
            On a non-finite value or a wrongly shaped sample.
        """
        sample = np.asarray(sample_raw, dtype=np.float64)
        if sample.ndim != 2 or sample.shape[1] != self._dim:
            raise ValueError(f"lens {self.name!r}: expected an (n, {self._dim}) sample, got {sample.shape}")
        transformed = self._scaler.transform_matrix(sample)
        if not self._ready or self._snapshot is None or not len(sample):
            return []
        space, xs = ScalerSnapshot.population_scaled(self._scaler.heavy, transformed)
        events = self._lloyd(xs, space)
        self._refined = True
        self._snapshot = space
        self._fit_rules(sample, xs)
        # rules travel in the refinement's own messages (a restored lens has none until its next refinement)
        self._with_rules = True
        try:
            return self._publish(events)
        finally:
            self._with_rules = False

    def _fit_rules(self, raw: np.ndarray, xs: np.ndarray) -> None:
        """Segment rules (:mod:`~segmenter.lenses.surrogate`) for the customers nearest each live segment."""
        live = self._registry.live()
        self._rules = None
        if not live or self._snapshot is None:
            return
        rng = np.random.default_rng([self.seed, self.model_version, 1])
        # the rows are chosen now (the segments and the sample are this refinement's), and only they are labelled;
        # each rule's fitting waits until it is read: most refinement ticks publish no lifecycle message
        idx = fit_rows(len(raw), rng)
        if idx is not None:
            raw, xs = raw[idx], xs[idx]
        labels, _ = nearest(xs, self._registry.scaled_centers(live, self._snapshot))
        self._rules = LazyRules(raw, np.asarray(live, np.int64)[labels], self.feature_names)  # copies the rows

    def _lloyd(self, xs: np.ndarray, space: ScalerSnapshot) -> list[LifecycleEvent]:
        """Lloyd iterations on rows ``xs`` scaled by ``space``; updates the registry and the model; returns events.

        Jumps and merges are judged in the lens's current scaled space (the one the segments were matched in),
        so a population that spreads out does not make a jump look small.
        """
        snap = self._snapshot
        live = self._registry.live()
        if snap is None or not live or not len(xs):
            return []
        # k stays: an emptied segment restarts at the worst-served customer (a retirement and a birth)
        cs, labels, own = lloyd_sse(
            xs, self._registry.scaled_centers(live, space), self.config.refine_iterations, tol=REFINE_TOL
        )
        rng = np.random.default_rng([self.seed, self.model_version])
        check = Assessment(xs, cs, rng)
        due = self._refinements % RESTART_CHECK_EVERY == 0
        checked = due or self._check_called_for(xs, cs, own)
        if checked and check.sse_ratio() > RESTART_RATIO:
            cs, own, check = self._restart(xs, cs, labels, own, check, rng)
        if due and n_clusters_of(self.config.algorithm, self.config.params) is None:
            fewer = fewer_segments(xs, cs, np.random.default_rng([self.seed, self.model_version, 3]))
            if fewer is not None:  # the segments that lose their place merge into the nearest survivor
                fewer, _, own = lloyd_sse(xs, fewer, self.config.refine_iterations)
                cs = merged_into(cs, fewer)
                check = Assessment(xs, fewer, np.random.default_rng([self.seed, self.model_version, 4]), True)
            elif len(live) < self.config.max_segments:
                cs, own, check = grown(xs, cs, own, check, self.config.refine_iterations,
                                       np.random.default_rng([self.seed, self.model_version, 5]))  # fmt: skip
        self._assessment = check
        if checked:
            self._checked_sse = own / len(xs)
        self._refinements += 1
        if not self._refined:
            snap = _wider(snap, space)
        in_snap = snap.scale_matrix(space.unscale_matrix(cs))
        merge = self.config.match_threshold / 2.0
        # summarising models drag segments between refinements: judge their jumps from the last refinement
        anchored = self._model.summarises
        events, replaced = self._registry.set_centers(live, in_snap[: len(live)], snap, merge_within=merge,
                                                      anchored=anchored)  # fmt: skip
        events.extend(self._registry.born(in_snap[len(live) :], snap, anchored=anchored))
        if replaced:
            self._model_map = {i: replaced.get(n, n) for i, n in self._model_map.items()}
        self._push_to_model()
        return events

    def _check_called_for(self, xs: np.ndarray, cs: np.ndarray, own: float) -> bool:
        """Between scheduled restart checks: a k-means lens's SSE per customer rose
        (:func:`~segmenter.lenses.quality.sse_rose`), or a summarising model's screen calls for the check."""
        if not self._model.summarises:
            return sse_rose(own / len(xs), self._checked_sse)
        return screen(xs, cs, np.random.default_rng([self.seed, self.model_version, 2])) > SCREEN_RATIO

    def _restart(  # noqa: PLR0913, PLR0917 - the refinement's state, handed over as it stands
        self,
        xs: np.ndarray,
        cs: np.ndarray,
        labels: np.ndarray,
        own: float,
        check: Assessment,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, float, Assessment]:
        """A bad local optimum: restart from batch k-means, polished on everyone, ids by nearest segment.

        Returns the centers, their SSE and assessment: the restarted ones when the restart pays for the customers
        it moves (:func:`~segmenter.lenses.quality.restart_pays`), else the ones given. A summarising model's
        restart pays no move cost: its segments are dragged by the summary between refinements, and a restart
        is its only way back to the batch optimum (with the cost, bench/quality.py's btyd value segments ended
        at 1.45x (STREAMKMeans) and 1.93x (CluStream) batch k-means instead of 1.08x and 1.10x).
        """
        check.quality()  # its silhouette draws from rng before the next assessment's sample
        fresh, fresh_labels, fresh_sse = lloyd_sse(xs, matched(cs, check.batch()), self.config.refine_iterations)
        moved = float(np.mean(fresh_labels != labels))
        pays = restart_pays(own, fresh_sse, 0.0 if self._model.summarises else moved)
        logger.debug("lens %s, refinement %d: a restart gains %.4f of the SSE and moves %.3f of the customers: %s",
                     self.name, self._refinements, 1.0 - fresh_sse / own if own > 0.0 else 0.0, moved,
                     "restarted" if pays else "kept")  # fmt: skip
        if not pays:
            return cs, own, check
        return fresh, fresh_sse, Assessment(xs, fresh, rng, restarted=True)

    def _push_to_model(self) -> None:
        """Write the segment centers back into a k-means model (its own scaled space = live scaler)."""
        if not self._model.can_push or not self._model_map:
            return
        live_snap = self._scaler.snapshot()
        pushes: dict[int, np.ndarray] = {}
        for index, number in self._model_map.items():
            seg = self._registry.segments.get(number)
            if seg is not None and seg.status == "live":
                pushes[index] = np.asarray(live_snap.scale(seg.center))
        if pushes:
            self._model.push_centers(pushes)

    # --- publication -------------------------------------------------------------------------

    def _publish(self, events: list[LifecycleEvent]) -> list[SegmentLifecycle]:
        """Bump the model version, rename, rebuild caches and turn events into messages."""
        self.model_version += 1
        renamed = self._rename()
        self._rebuild_caches()
        messages = []
        for e in events:
            messages.append(self._message(e.action, e.segment, e.related, {}))
        for number, previous in renamed:
            messages.append(self._message("renamed", number, [], {"previous_name": previous}))
        return messages

    def _message(self, action: Any, number: int, related: list[int], extra: dict[str, Any]) -> SegmentLifecycle:
        profile = self._profile(number, with_rule=self._with_rules).as_dict()
        if not self._with_rules:
            profile.pop("rule", None)
        profile.update(extra)
        return SegmentLifecycle(
            lens=self.name,
            action=action,
            segment=self.ref(number),
            related=[self._id(r) for r in related],
            model_version=self.model_version,
            profile=profile,
        )

    def _rename(self) -> list[tuple[int, str]]:
        """Recompute names of live segments; return (number, previous name) for renamed ones."""
        snap = self._snapshot
        live = self._registry.live()
        if snap is None or not live:
            return []
        cs = self._registry.scaled_centers(live, snap)
        zs = {n: dict(zip(self.feature_names, cs[i].tolist(), strict=True)) for i, n in enumerate(live)}
        overrides = {n: v for n, v in self.config.names.items()}
        segs = self._registry.segments
        previous = {n: segs[n].name for n in live}
        values = {n: dict(zip(self.feature_names, snap.inverse(cs[i].tolist()), strict=True))
                  for i, n in enumerate(live)}  # fmt: skip
        names = unique_names(zs, overrides, previous, values)
        renamed = []
        for n in live:
            old = segs[n].name
            segs[n].name = names[n]
            if old and old != names[n]:
                renamed.append((n, old))
        return renamed

    def _rebuild_caches(self) -> None:
        """Plain-Python copies of what :meth:`assign` needs."""
        self._cache_epoch += 1
        self._refs: dict[int, SegmentRef] = {}
        snap = self._snapshot
        live = self._registry.live()
        if snap is None or not live:
            self._live: list[int] = []
            self._centers: list[list[float]] = []
            self._center_array = np.zeros((0, self._dim), np.float64)
            self._live_array = np.zeros(0, np.int64)
            self._inv: list[float] = [1.0] * self._dim
            self._offset: list[float] = [0.0] * self._dim
            return
        self._live = live
        self._center_array = np.ascontiguousarray(self._registry.scaled_centers(live, snap), np.float64)
        self._centers = self._center_array.tolist()
        self._live_array = np.asarray(live, np.int64)
        self._inv = [1.0 / s for s in snap.std]
        self._offset = [m / s for m, s in zip(snap.mean, snap.std, strict=True)]

    # --- assignment --------------------------------------------------------------------------

    def _scaled(self, raw: np.ndarray) -> list[float]:
        values = self._transformed(raw.tolist())
        return [v * s - o for v, s, o in zip(values, self._inv, self._offset, strict=False)]

    def _transformed(self, values: list[float]) -> list[float]:
        """``values`` (a new list, original units) log-transformed in place where heavy-tailed; checked first."""
        if len(values) != self._dim:
            raise ValueError(f"lens {self.name!r}: expected {self._dim} features, got {len(values)}")
        total = sum(values)
        if total - total != 0.0 and not all_finite(values):
            raise ValueError(f"lens {self.name!r}: non-finite feature value in {values!r}")
        for i in self._heavy:
            v = values[i]
            values[i] = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
        return values

    @property
    def guard_s(self) -> int:
        """The move-back guard (``min_dwell_hours``, seconds): how far :meth:`assign`'s ``ahead`` runs the clock."""
        return int(guard_s(self.rule))

    def assign(  # noqa: PLR0913, PLR0917 - the move rule's inputs, as the event loop passes them
        self,
        raw: np.ndarray,
        current: int | None,
        dwell: int,
        age: int = 2**62,
        previous: int | None = None,
        wait: int = -1,
        ahead: np.ndarray | None = None,
    ) -> Assignment:
        """Nearest live segment, with hysteresis against ``current``.

        The rule is :func:`~segmenter.lenses.hysteresis.nearest_with_hysteresis`, the one the
        compiled event loop applies to every event and the compiled re-scorer
        (:mod:`segmenter.rescoring`) to the inactivity sweep and the reassignment after a merge
        or retirement; this entry states it for one customer in Python (the lens's examples, the
        tests that check both compiled paths against it, bench/quality.py's held labels).

        Parameters
        ----------
        raw
            The customer's raw feature vector (original units).
        current
            The customer's current segment (None if none). A current segment
            that is no longer live (merged, retired) is left without hysteresis.
        dwell
            Events the customer has spent in ``current``.
        age, previous
            Event time (seconds) the customer has spent in ``current``, and the segment it left for it.
        wait
            Event time (seconds) since its nearest segment has been another one
            (:func:`~segmenter.lenses.hysteresis.waited`; ``-1``: no pending move).
        ahead
            ``raw`` with only its clock features run ahead by the move-back guard
            (:meth:`~segmenter.features.FeatureStore.clock_ahead`; None: ``raw`` itself, as for a lens
            without clock features): a move that is not nearer its target there too is not made
            (:func:`~segmenter.lenses.hysteresis.holds_ahead`, the event loop's veto).

        Raises
        ------
        ValueError
            On a non-finite value or a vector of the wrong length.
        """
        n = len(self._live)
        if not n:
            return Assignment(None, None, None, current is not None)
        x = np.array(self._scaled(raw), np.float64)
        moved, segment, nearest, d_seg = nearest_with_hysteresis(
            x,
            self._center_array,
            self._live_array,
            n,
            self._dim,
            -1 if current is None else current,
            dwell,
            age,
            -1 if previous is None else previous,
            wait,
            self.rule,
        )
        if moved and current is not None and ahead is not None:
            xa = np.array(self._scaled(ahead), np.float64)
            if not holds_ahead(xa, self._center_array, self._live_array, n, self._dim, current, segment):
                moved, segment = False, current
                d_seg = distance(x, self._center_array, self._live.index(current), self._dim)
        return Assignment(int(segment), int(nearest), float(d_seg), bool(moved))

    def explain(self, raw: Sequence[float] | np.ndarray, old: int | None, new: int | None) -> Explanation:
        """Why the customer moves from ``old`` to ``new`` (either may be None).

        ``top_features`` holds up to three features with the largest
        contribution ``(x - c_old)^2 - (x - c_new)^2`` in scaled space (the
        population mean stands in for a missing side), positive ones only when
        there are any, as ``{"feature", "value", "z", "contribution"}``. One
        move of :class:`~segmenter.explanations.Explainer`, which explains a
        whole buffer of moves in one compiled pass (the pipeline's path).

        Raises
        ------
        ValueError
            On a non-finite value or a vector of the wrong length.
        """
        values = np.asarray(raw, np.float64).reshape(1, -1)
        if values.shape[1] != self._dim or not np.isfinite(values).all():
            raise ValueError(f"lens {self.name!r}: expected {self._dim} finite features, got {values[0].tolist()!r}")
        return Explainer(self).explain(values, [-1 if old is None else old], [-1 if new is None else new])[0]

    # --- segments ----------------------------------------------------------------------------

    def _id(self, number: int) -> str:
        return f"{self.name}-{number}"

    def ref(self, segment: int) -> SegmentRef:
        """``{"id": f"{lens}-{n}", "name": ...}`` for a segment (live or not).

        Raises
        ------
        KeyError
            For a segment number the lens never had.
        """
        ref = self._refs.get(segment)
        if ref is None:
            seg = self._registry.segments[segment]
            ref = SegmentRef(id=self._id(segment), name=seg.name or self._id(segment))
            self._refs[segment] = ref
        return ref

    def membership(self, old: int | None, new: int | None) -> None:
        """A customer left ``old`` and entered ``new``: keeps segment sizes."""
        self._registry.membership(old, new)

    def is_live(self, segment: int) -> bool:
        """False for an unknown, merged or retired segment."""
        return self._registry.is_live(segment)

    def _profile(self, number: int, *, with_rule: bool = True) -> SegmentProfile:
        seg = self._registry.segments[number]
        snap = self._snapshot
        centroid: dict[str, float] = {}
        z: dict[str, float] = {}
        if snap is not None:
            scaled = snap.scale(seg.center)
            z = dict(zip(self.feature_names, scaled, strict=True))
            centroid = dict(zip(self.feature_names, snap.inverse(scaled), strict=True))
        rules = self._rules if with_rule and seg.status == "live" else None
        rule = None if rules is None else rules.get(number)
        return SegmentProfile(segment=number, id=self._id(number), name=seg.name or self._id(number),
                              size=seg.size, centroid=centroid, z=z, status=seg.status,
                              rule=None if rule is None else rule.as_dict())  # fmt: skip

    def profiles(self) -> list[SegmentProfile]:
        """Profiles of the live segments, by segment number."""
        return [self._profile(n) for n in self._registry.live()]

    # --- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue identically; plain data (:mod:`segmenter.codec`), not aliased to the lens."""
        snap = self._snapshot
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "algorithm": self.config.algorithm,
            "features": list(self.feature_names),
            "model_version": self.model_version,
            "n_obs": self._n_obs,
            "warm": [list(v) for v in self._warm],
            "batch": [list(v) for v in self._batch],
            "learned_since_refresh": self._learned_since_refresh,
            "ready": self._ready,
            "refined": self._refined,
            "refinements": self._refinements,
            "checked_sse": self._checked_sse,
            "snapshot": None if snap is None else {"mean": list(snap.mean), "std": list(snap.std)},
            "model_map": dict(self._model_map),
            "scaler": self._scaler.state(),
            "model": self._model.state(),
            "registry": self._registry.state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` output into a lens built with the same config.

        Raises
        ------
        StateError
            Wrong version, another lens, algorithm or feature list, or a corrupt record.
        """
        if not isinstance(state, dict):
            raise StateError(f"lens {self.name!r}: state must be an object")
        if state.get("version") != STATE_VERSION:
            raise StateError(f"lens {self.name!r}: state version {state.get('version')!r}, expected {STATE_VERSION}")
        for key, mine in (
            ("name", self.name),
            ("algorithm", self.config.algorithm),
            ("features", list(self.feature_names)),
        ):
            if state.get(key) != mine:
                raise StateError(f"lens {self.name!r}: state is for {key} {state.get(key)!r}, not {mine!r}")
        try:
            snap_data = state["snapshot"]
            snapshot = (
                None
                if snap_data is None
                else ScalerSnapshot(
                    heavy=self._scaler.heavy,
                    mean=tuple(float(v) for v in snap_data["mean"]),
                    std=tuple(float(v) for v in snap_data["std"]),
                )
            )
            model_version = int(state["model_version"])
            n_obs = int(state["n_obs"])
            warm = [[float(v) for v in row] for row in state["warm"]]
            batch = [[float(v) for v in row] for row in state["batch"]]
            learned = int(state["learned_since_refresh"])
            ready = bool(state["ready"])
            refined = bool(state.get("refined", True))  # states from before the key: refined long ago
            refinements = int(state.get("refinements", 0))  # states from before the key: check at the next one
            checked = state.get("checked_sse")  # states from before the key: the next scheduled check sets it
            checked_sse = None if checked is None else float(checked)
            model_map = {int(k): int(v) for k, v in state["model_map"].items()}
            if isinstance(state["ready"], bool) is False or min(model_version, n_obs, learned, refinements) < 0:
                raise ValueError("ready must be a boolean, counters >= 0")
            if checked_sse is not None and not 0.0 <= checked_sse < _INF:
                raise ValueError(f"checked_sse must be finite and >= 0, not {checked_sse!r}")
            rows = [*warm, *batch] + ([] if snapshot is None else [list(snapshot.mean), list(snapshot.std)])
            if any(len(r) != len(self.feature_names) or not all_finite(r) for r in rows):
                raise ValueError(f"vectors must hold {len(self.feature_names)} finite values")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"lens {self.name!r}: invalid state: {exc}") from None
        self._scaler.load_state(state["scaler"])
        self._model.load_state(state["model"])
        self._registry.load_state(state["registry"])
        self._snapshot = snapshot
        self.model_version = model_version
        self._n_obs = n_obs
        self._warm = warm
        self._batch = batch
        self._learned_since_refresh = learned
        self._ready = ready
        self._refined = refined
        self._refinements = refinements
        self._checked_sse = checked_sse
        self._model_map = model_map
        self._rebuild_caches()


def _wider(a: ScalerSnapshot, b: ScalerSnapshot) -> ScalerSnapshot:
    """``a`` with, per feature, the larger standard deviation of the two: where the first refinement's jumps
    and merges are judged.

    The warm-up's snapshot holds everyone's first few events; the population grows apart from it, and in its
    units every center's move at the first refinement looked like a jump (all value segments retired and
    reborn on bench/quality.py's separated scenario). Later refinements judge in the last one's space, where
    a vanished population replaced by a far one is still a jump.
    """
    return dataclasses.replace(a, std=tuple(max(x, y) for x, y in zip(a.std, b.std, strict=True)))
