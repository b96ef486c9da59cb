"""River clustering models behind one small interface.

:class:`ClusterModel` is what a lens needs from an online clusterer: learn a
batch of scaled vectors, and report cluster centers (and, where the model has
them, weights). One adapter per river algorithm hides that algorithm's quirks
(river 0.26.1, read from its source):

* every adapter feeds river integer feature keys ``0..d-1`` (never strings:
  ``KMeans`` is ``PYTHONHASHSEED``-dependent with string keys) and always the
  same keys (``KMeans.predict_one`` adds unseen keys to every center);
* ``KMeans`` centers are random ``defaultdict`` values before learning: centers
  are reported only once every center holds all ``d`` keys, read with ``.get``
  so that reading never draws from the model's random generator;
* ``STREAMKMeans`` has no centers (and ``predict_one`` raises) before its first
  learn, and random ones until its first chunk is complete; the adapter keeps
  its own weighted summary of the chunks (:class:`STREAMKMeansModel`);
* ``DenStream`` refreshes ``centers`` only inside ``predict_one``: the adapter
  calls it once per :meth:`ClusterModel.centers` and never on the hot path;
* ``CluStream`` has no centers until its first ``time_gap``;
* ``DBSTREAM`` re-clusters (and renumbers) whenever ``centers`` is read: read it
  only at a refresh; the lens's registry keeps segment ids stable.

Examples
--------
>>> import numpy as np
>>> model = make_model("kmeans", {"n_clusters": 2, "halflife": 0.3}, dim=2, seed=7)
>>> model.centers().shape
(0, 2)
>>> model.learn_many(np.array([[0.0, 0.0], [5.0, 5.0], [0.1, 0.0], [5.0, 4.9]]))
>>> model.centers().shape
(2, 2)
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from numba import njit
from river import cluster

from segmenter.codec import expect_dict, expect_int, expect_list
from segmenter.errors import ConfigError, StateError
from segmenter.lenses.lloyd import kmeans_plus_plus, lloyd
from segmenter.lenses.river_state import export_model, import_model

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CluStreamModel",
    "ClusterModel",
    "DBSTREAMModel",
    "DenStreamModel",
    "KMeansModel",
    "STREAMKMeansModel",
    "make_model",
    "validate_params",
]

logger = logging.getLogger(__name__)

Algorithm = Literal["kmeans", "streamkmeans", "denstream", "dbstream", "clustream"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

_KMEANS_KWARGS = ("halflife", "mu", "sigma", "p")
#: Lloyd iterations of the CluStream offline (macro) phase.
MACRO_ITERATIONS = 20


class ClusterModel(ABC):
    """An online clusterer as seen by a lens.

    Parameters
    ----------
    params
        Validated constructor parameters of the river model (see :func:`validate_params`).
    dim
        Number of features; river gets keys ``0..dim-1``.
    seed
        Seed for the model's randomness (ignored by the deterministic density models).
    """

    #: The ``LensConfig.algorithm`` name.
    algorithm: ClassVar[str]
    #: The river class.
    river_class: ClassVar[type[Any]]
    #: Constructor parameters accepted in ``LensConfig.params``.
    allowed_params: ClassVar[tuple[str, ...]]
    #: Whether :meth:`push_centers` can write refined centers back into the model.
    can_push: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any], dim: int, seed: int) -> None:
        self.params = dict(params)
        self.dim = dim
        self.seed = seed
        self.n_learned = 0
        self.model: Any = self._build()
        self._weights = np.ones(0)

    stable_indices: bool = False
    """True when a center keeps its index between :meth:`centers` calls (river's KMeans):
    the registry then continues a segment by index before matching by distance."""

    summarises: ClassVar[bool] = False
    """True when the model's output is a weighted summary (:meth:`micro_clusters`) from which the lens derives
    its segments by weighted Lloyd steps seeded from the live segments (STREAMKMeans, the density models,
    CluStream: :mod:`segmenter.lenses.summary`)."""

    def micro_clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """The online summary: micro-cluster centers in scaled space ``(m, d)`` and their current weights ``(m,)``.

        Only finite centers with positive weight; ``(0, d)`` when the model has none (or no summary).
        """
        rows, weights = self._raw_micro()
        if not rows:
            return np.zeros((0, self.dim)), np.zeros(0)
        arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), self.dim)
        w = np.asarray(weights, dtype=np.float64)
        keep = np.isfinite(arr).all(axis=1) & np.isfinite(w) & (w > 0.0)
        return arr[keep], w[keep]

    def _raw_micro(self) -> tuple[list[list[float]], list[float]]:
        """Micro-cluster centers and weights as lists (models without a summary: none)."""
        return [], []

    @abstractmethod
    def _build(self) -> Any:
        """Construct the river model."""

    def learn_many(self, X: np.ndarray) -> None:  # noqa: N803
        """Learn the rows of a scaled ``(n, d)`` matrix, in order."""
        learn = self.model.learn_one
        for row in X.tolist():
            learn(dict(enumerate(row)))
        self.n_learned += len(X)

    @abstractmethod
    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        """Current centers (lists of ``d`` floats) and their weights."""

    def centers(self) -> np.ndarray:
        """Cluster centers in scaled space, shape ``(k, d)``; ``(0, d)`` when the model has none yet.

        Rows with a non-finite value are dropped. :meth:`weights` then gives one
        weight per returned row.
        """
        rows, weights = self._raw_centers()
        if not rows:
            self._weights = np.ones(0)
            return np.zeros((0, self.dim))
        arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), self.dim)
        w = np.asarray(weights, dtype=np.float64)
        keep = np.isfinite(arr).all(axis=1) & np.isfinite(w)
        self._weights = w[keep]
        return arr[keep]

    def weights(self) -> np.ndarray:
        """Weights of the centers returned by the last :meth:`centers` call (1.0 when the model has none)."""
        return self._weights.copy()

    def push_centers(self, centers: Mapping[int, np.ndarray]) -> bool:
        """Overwrite model centers (index of :meth:`centers` -> scaled vector); False if unsupported."""
        return False

    def _dict_center(self, center: Mapping[int, float]) -> list[float] | None:
        """A river center dict as a list, or None unless it holds every key (read without side effects)."""
        out = []
        for j in range(self.dim):
            v = center.get(j)
            if v is None:
                return None
            out.append(float(v))
        return out

    def _collect(
        self, clusters: Mapping[int, Any], weight: Callable[[Any], float]
    ) -> tuple[list[list[float]], list[float]]:
        """Centers (``.center`` dicts holding every key) and ``weight(cluster)`` of river clusters, by key."""
        rows: list[list[float]] = []
        weights: list[float] = []
        for key in sorted(clusters):
            row = self._dict_center(clusters[key].center)
            if row is not None:
                rows.append(row)
                weights.append(float(weight(clusters[key])))
        return rows, weights

    def state(self) -> dict[str, Any]:
        """Plain state: the river model's parameters and fitted attributes (:mod:`~segmenter.lenses.river_state`)."""
        return {"model": export_model(self.model), "n_learned": self.n_learned}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` output (the river model is rebuilt; nothing in the data is run).

        Raises
        ------
        StateError
            The state is malformed, holds another river class, or was fitted with other parameters.
        """
        state = expect_dict(state, f"{self.algorithm} model state")
        n_learned = expect_int(state.get("n_learned"), f"{self.algorithm} model n_learned", 0)
        model = import_model(state.get("model"), self.river_class)
        fresh = self._build()
        for key in self.params:
            if getattr(model, key, None) != getattr(fresh, key, None):
                raise StateError(
                    f"{self.algorithm} model state has {key}={getattr(model, key, None)!r}, "
                    f"the config {getattr(fresh, key, None)!r}"
                )
        self.model = model
        self.n_learned = n_learned


DEFAULT_KMEANS_HALFLIFE = 0.01
"""Step of river's KMeans when the config sets none: a center averages about the last 100 points it won."""


@njit(cache=True)
def _kmeans_learn(rows: Any, centers: Any, halflife: float, p: float) -> None:  # pragma: no cover - compiled
    """River's KMeans update, row by row: the nearest center (Minkowski ``p``, first on ties) moves by ``halflife``."""
    k, d = centers.shape
    for r in range(rows.shape[0]):
        best = 0
        best_d = -1.0
        for c in range(k):
            dist = 0.0
            for j in range(d):
                dist += abs(centers[c, j] - rows[r, j]) ** p
            if best_d < 0.0 or dist < best_d:
                best_d = dist
                best = c
        for j in range(d):
            v = centers[best, j]
            v += halflife * (rows[r, j] - v)
            centers[best, j] = v


class KMeansModel(ClusterModel):
    """``river.cluster.KMeans`` (incremental k-means; ``halflife`` moves the nearest center).

    ``learn_many`` runs river's exact update (nearest center by Minkowski
    distance, move it by ``halflife``) on river's own center dicts, without
    river's per-call set building: same results, several times faster.

    ``halflife`` defaults to :data:`DEFAULT_KMEANS_HALFLIFE`, not river's 0.5:
    river's default moves a center halfway to every learned point, so its
    clusters jump around and segments churn (retire and re-birth) at every
    refresh.
    """

    algorithm = "kmeans"
    stable_indices = True
    river_class = cluster.KMeans
    allowed_params = ("n_clusters", "halflife", "mu", "sigma", "p")
    can_push = True

    def _build(self) -> Any:
        return cluster.KMeans(seed=self.seed, **{"halflife": DEFAULT_KMEANS_HALFLIFE, **self.params})

    def learn_many(self, X: np.ndarray) -> None:  # noqa: N803
        model = self.model
        centers = model.centers
        dim = self.dim
        rows = X.tolist()
        start = 0
        if any(len(c) != dim for c in centers.values()):
            if not rows:
                return
            # Let river initialise the random center coordinates, in its own order.
            model.learn_one(dict(enumerate(rows[0])))
            start = 1
        keys = list(centers)
        rest = np.array(rows[start:], np.float64).reshape(-1, dim)
        cs = np.array([[centers[k][j] for j in range(dim)] for k in keys], np.float64)
        _kmeans_learn(rest, cs, float(model.halflife), float(model.p))
        for k, row in zip(keys, cs.tolist(), strict=True):
            center = centers[k]
            for j, v in enumerate(row):
                center[j] = v
        self.n_learned += len(rows)

    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        if self.n_learned == 0:
            return [], []
        rows = [self._dict_center(c) for c in self.model.centers.values()]
        kept = [r for r in rows if r is not None]
        return kept, [1.0] * len(kept)

    def push_centers(self, centers: Mapping[int, np.ndarray]) -> bool:
        if self.n_learned == 0:
            return False
        keys = list(self.model.centers)
        for index, vec in centers.items():
            target = self.model.centers[keys[index]]
            for j, v in enumerate(vec.tolist()):
                target[j] = v
        return True


SUMMARY_CHUNKS = 40
"""Chunks whose weighted centers the STREAMKMeans summary keeps: a window of the last ``40 * chunk_size`` samples."""
CHUNK_ITERATIONS = 10
"""Lloyd iterations per STREAMKMeans chunk."""


class STREAMKMeansModel(ClusterModel):
    """``river.cluster.STREAMKMeans`` (k-means over chunk centers), summarised by its chunks' weighted centers.

    River clusters each chunk with a fresh incremental ``KMeans`` that starts
    from random centers; with a small ``halflife`` those chunk centers hardly
    leave their random start, and the model's centers (a KMeans over them)
    carry little of the data. The adapter lets river learn as it does and keeps
    the STREAM summary proper beside it: each complete chunk clustered by
    k-means++ and Lloyd (seeded from the adapter seed and the chunk's
    timestamp), its non-empty centers weighted by the points they hold, over the
    last :data:`SUMMARY_CHUNKS` chunks. The lens derives its segments from that
    summary like from the density models' micro-clusters.
    """

    algorithm = "streamkmeans"
    river_class = cluster.STREAMKMeans
    allowed_params = ("chunk_size", "n_clusters", *_KMEANS_KWARGS)
    summarises = True

    def __init__(self, params: Mapping[str, Any], dim: int, seed: int) -> None:
        super().__init__(params, dim, seed)
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=SUMMARY_CHUNKS)

    def _build(self) -> Any:
        return cluster.STREAMKMeans(seed=self.seed, **self.params)  # type: ignore[no-untyped-call]

    def learn_many(self, X: np.ndarray) -> None:  # noqa: N803
        model = self.model
        for row in X.tolist():
            model.learn_one(dict(enumerate(row)))
            if model.time_stamp % model.chunk_size == 0:
                self._summarise_chunk()
        self.n_learned += len(X)

    def _summarise_chunk(self) -> None:
        """Weighted k-means centers of river's just completed chunk, into the summary window."""
        chunk = np.array([[p[j] for j in range(self.dim)] for p in self.model._temp_chunk.values()], np.float64)
        rng = np.random.default_rng([self.seed, int(self.model.time_stamp)])
        seeds = kmeans_plus_plus(chunk, int(self.model.n_clusters), rng)
        centers, labels = lloyd(chunk, seeds, CHUNK_ITERATIONS, reseed_empty=False)
        mass = np.bincount(labels, minlength=len(centers)).astype(np.float64)
        held = mass > 0.0
        self._chunks.append((centers[held], mass[held]))

    def _raw_micro(self) -> tuple[list[list[float]], list[float]]:
        rows = [row for centers, _ in self._chunks for row in centers.tolist()]
        return rows, [w for _, mass in self._chunks for w in mass.tolist()]

    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        # Before the first learn `centers` is {}; before the first full chunk the inner
        # KMeans centers hold no keys yet (reading them with [] would draw random values).
        if self.model.time_stamp < self.model.chunk_size:
            return [], []
        rows = [self._dict_center(c) for c in self.model.centers.values()]
        kept = [r for r in rows if r is not None]
        return kept, [1.0] * len(kept)

    def state(self) -> dict[str, Any]:
        chunks = [{"centers": c.tolist(), "weights": w.tolist()} for c, w in self._chunks]
        return {**super().state(), "chunks": chunks}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` output (a state without ``chunks`` restores an empty summary).

        Raises
        ------
        StateError
            As :meth:`ClusterModel.load_state`, or a chunk that is not ``centers`` (finite, ``dim`` wide)
            with one positive weight each.
        """
        state = expect_dict(state, "streamkmeans model state")
        chunks = [self._chunk(c) for c in expect_list(state.get("chunks", []), "streamkmeans model chunks")]
        super().load_state(state)
        self._chunks = deque(chunks[-SUMMARY_CHUNKS:], maxlen=SUMMARY_CHUNKS)

    def _chunk(self, record: Any) -> tuple[np.ndarray, np.ndarray]:
        record = expect_dict(record, "streamkmeans model chunk")
        try:
            centers = np.asarray(record.get("centers"), np.float64).reshape(-1, self.dim)
            weights = np.asarray(record.get("weights"), np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise StateError(f"streamkmeans model chunk: expected numbers: {exc}") from None
        if len(centers) != len(weights) or not np.isfinite(centers).all() or not (weights > 0.0).all():
            raise StateError(
                f"streamkmeans model chunk: expected {self.dim}-wide finite centers, one positive weight each"
            )
        return centers, weights


class DenStreamModel(ClusterModel):
    """``river.cluster.DenStream`` (density-based; clusters formed on demand).

    Centers refresh only inside ``predict_one`` (a DBSCAN over the potential
    micro-clusters), so :meth:`centers` calls it once. Weights are the clusters'
    faded weights. Known river bugs (#2004, #2006): micro-cluster dict keys are
    reused after deletions, which can drop micro-clusters; treat cluster counts
    as approximate.
    """

    algorithm = "denstream"
    river_class = cluster.DenStream
    allowed_params = ("decaying_factor", "beta", "mu", "epsilon", "n_samples_init", "stream_speed")
    summarises = True

    def _build(self) -> Any:
        return cluster.DenStream(**self.params)

    def _raw_micro(self) -> tuple[list[list[float]], list[float]]:
        if not self.model.initialized:
            return [], []
        return self._faded(self.model.p_micro_clusters)

    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        model = self.model
        if not model.initialized:
            return [], []
        model.predict_one(dict.fromkeys(range(self.dim), 0.0))
        return self._faded(model.clusters)

    def _faded(self, clusters: Mapping[int, Any]) -> tuple[list[list[float]], list[float]]:
        """Centers and faded weights (at the model's timestamp) of DenStream clusters, by key."""
        now = self.model.timestamp
        return self._collect(clusters, lambda mc: mc.calc_weight(now))


class DBSTREAMModel(ClusterModel):
    """``river.cluster.DBSTREAM`` (shared-density graph; re-clusters and renumbers on every read)."""

    algorithm = "dbstream"
    river_class = cluster.DBSTREAM
    allowed_params = (
        "clustering_threshold",
        "fading_factor",
        "cleanup_interval",
        "intersection_factor",
        "minimum_weight",
    )

    summarises = True

    def _build(self) -> Any:
        return cluster.DBSTREAM(**self.params)

    def _raw_micro(self) -> tuple[list[list[float]], list[float]]:
        model = self.model
        now, fading = model._time_stamp, model.fading_factor
        return self._collect(model._micro_clusters, lambda mc: mc.weight * 2.0 ** (-fading * (now - mc.last_update)))

    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        return self._collect(self.model.clusters, lambda c: c.weight)  # reading clusters re-clusters


class CluStreamModel(ClusterModel):
    """``river.cluster.CluStream`` (micro-clusters; river runs one KMeans pass over them every ``time_gap``).

    River's macro step is a single incremental-KMeans pass over the
    micro-cluster centers (unweighted, random init), which often leaves a
    macro cluster empty or straddling two groups. The adapter does CluStream's
    offline phase properly instead: weighted k-means++ plus Lloyd over the
    micro-clusters (weights = micro-cluster weights), seeded from the adapter
    seed and the learn counter. Centers exist only after the first ``time_gap``.
    """

    algorithm = "clustream"
    river_class = cluster.CluStream
    allowed_params = (
        "n_macro_clusters",
        "max_micro_clusters",
        "micro_cluster_r_factor",
        "time_window",
        "time_gap",
        *_KMEANS_KWARGS,
    )

    summarises = True

    def _build(self) -> Any:
        return cluster.CluStream(seed=self.seed, **self.params)

    def _raw_micro(self) -> tuple[list[list[float]], list[float]]:
        return self._collect(self.model.micro_clusters, lambda mc: mc.weight)

    def _raw_centers(self) -> tuple[list[list[float]], list[float]]:
        model = self.model
        if model._kmeans_mc is None or not model.micro_clusters:
            return [], []
        mcs, w = self.micro_clusters()
        if not len(mcs):
            return [], []
        k = int(model.n_macro_clusters)
        rng = np.random.default_rng([self.seed, self.n_learned])
        macro, labels = lloyd(mcs, kmeans_plus_plus(mcs, k, rng, w), iterations=MACRO_ITERATIONS, weights=w)
        mass = np.bincount(labels, weights=w, minlength=len(macro))
        return macro.tolist(), mass.tolist()


_MODELS: dict[str, type[ClusterModel]] = {
    m.algorithm: m for m in (KMeansModel, STREAMKMeansModel, DenStreamModel, DBSTREAMModel, CluStreamModel)
}

# Simple range rules per parameter: (predicate, what is required).
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "n_clusters": (lambda v: v >= 1, "an integer >= 1"),
    "n_macro_clusters": (lambda v: v >= 1, "an integer >= 1"),
    "chunk_size": (lambda v: v >= 1, "an integer >= 1"),
    "max_micro_clusters": (lambda v: v >= 2, "an integer >= 2"),
    "time_gap": (lambda v: v >= 1, "an integer >= 1"),
    "time_window": (lambda v: v >= 1, "an integer >= 1"),
    "n_samples_init": (lambda v: v >= 1, "an integer >= 1"),
    "stream_speed": (lambda v: v >= 1, "an integer >= 1"),
    "halflife": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "sigma": (lambda v: v > 0.0, "a number > 0"),
    "p": (lambda v: v >= 1.0, "a number >= 1"),
    "decaying_factor": (lambda v: v > 0.0, "a number > 0"),
    "beta": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "mu": (lambda v: True, "a number"),
    "epsilon": (lambda v: v > 0.0, "a number > 0"),
    "clustering_threshold": (lambda v: v > 0.0, "a number > 0"),
    "fading_factor": (lambda v: v > 0.0, "a number > 0"),
    "cleanup_interval": (lambda v: v >= 1, "a number >= 1"),
    "intersection_factor": (lambda v: v > 0.0, "a number > 0"),
    "minimum_weight": (lambda v: v >= 0.0, "a number >= 0"),
    "micro_cluster_r_factor": (lambda v: v > 0.0, "a number > 0"),
}
_INTEGER_PARAMS = frozenset(
    {
        "n_clusters",
        "n_macro_clusters",
        "chunk_size",
        "max_micro_clusters",
        "time_gap",
        "time_window",
        "n_samples_init",
        "stream_speed",
    }
)


def model_class(algorithm: str) -> type[ClusterModel]:
    """The adapter class for an algorithm name; ConfigError naming ``algorithm`` when unknown."""
    try:
        return _MODELS[algorithm]
    except KeyError:
        raise ConfigError(
            f"field 'algorithm': unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        ) from None


def validate_params(algorithm: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the algorithm's river constructor; return a clean copy.

    Raises
    ------
    ConfigError
        Naming the field (``params.<name>``): unknown algorithm or parameter, ``seed``
        (the lens seed is derived from the top-level seed), a non-numeric value, a
        value out of range, or a combination the river constructor rejects.
    """
    cls = model_class(algorithm)
    signature = inspect.signature(cls.river_class.__init__).parameters
    clean = {key: _checked(cls, key, params[key], key in signature) for key in sorted(params)}
    if algorithm == "denstream":
        beta = float(clean.get("beta", 0.75))
        mu = float(clean.get("mu", 2))
        if beta * mu <= 1.0:
            raise ConfigError(f"field 'params.mu': DenStream needs beta * mu > 1, got {beta} * {mu}")
    try:
        cls(clean, dim=1, seed=0)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise ConfigError(f"field 'params': river {cls.river_class.__name__} rejects {clean!r}: {exc}") from exc
    return clean


def _checked(cls: type[ClusterModel], key: str, value: Any, in_signature: bool) -> int | float:
    """One parameter of ``cls`` checked (ConfigError naming ``params.<key>``), as an int where it must be one."""
    field = f"params.{key}"
    if key == "seed":
        raise ConfigError(f"field '{field}': remove it; the lens seed derives from the top-level 'seed'")
    if key not in cls.allowed_params:
        raise ConfigError(
            f"field '{field}': unknown parameter for {cls.algorithm}; allowed: {', '.join(cls.allowed_params)}"
        )
    if not in_signature and key not in _KMEANS_KWARGS:  # pragma: no cover - guards river upgrades
        raise ConfigError(f"field '{field}': not accepted by river {cls.river_class.__name__}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"field '{field}': expected a number, got {value!r}")
    integer = key in _INTEGER_PARAMS
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ConfigError(f"field '{field}': expected an integer, got {value!r}")
    if not np.isfinite(value):
        raise ConfigError(f"field '{field}': expected a finite number, got {value!r}")
    rule = _RULES.get(key)
    if rule is not None and not rule[0](value):
        raise ConfigError(f"field '{field}': must be {rule[1]}, got {value!r}")
    return int(value) if integer else value


def make_model(algorithm: str, params: Mapping[str, Any], dim: int, seed: int) -> ClusterModel:
    """Build the adapter for ``algorithm`` with validated ``params``."""
    return model_class(algorithm)(validate_params(algorithm, params), dim=dim, seed=seed)


def n_clusters_of(algorithm: str, params: Mapping[str, Any]) -> int | None:
    """The configured number of clusters for the k-means family (None for density models)."""
    if algorithm in ("kmeans", "streamkmeans"):
        default = 5 if algorithm == "kmeans" else 2
        return int(params.get("n_clusters", default))
    if algorithm == "clustream":
        return int(params.get("n_macro_clusters", 5))
    return None
