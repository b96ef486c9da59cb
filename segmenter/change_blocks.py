"""A move buffer's ``segment_change`` messages as columns: :class:`SegmentChanges`, built by :class:`ChangeBuilder`.

The core hands over the moves of one :class:`~segmenter.moves.MoveBuffer` as
one block: the customer ids, lenses, segment refs, causes, times, distances,
features and explanation numbers of its moves, captured when the moves were
made (refs, names and model versions as they were then). A block is two things
at once, from the same columns:

- :meth:`SegmentChanges.messages`: the :class:`~segmenter.outputs.SegmentChange`
  messages (for the trigger engine, the model-view follower, tests);
- :meth:`SegmentChanges.encode_lines`: their JSON lines, the bytes
  :func:`~segmenter.outputs.encode_lines` writes for those messages, assembled
  in one compiled pass (:mod:`segmenter.change_lines`) without a Python object
  per message (the replay edge, which only writes them, and the Kafka edge,
  whose records carry them one line each: :meth:`SegmentChanges.lines`).

:func:`messages_of`, :func:`encode_parts` and :func:`runs` take a list of
outputs in which blocks stand for their messages (:data:`Output`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from segmenter.change_lines import LINE_ROOM, change_lines
from segmenter.clock import iso
from segmenter.explanations import NO_EXPLANATION, TOP_FEATURES, Numbers
from segmenter.malloc_tuning import MMAP_THRESHOLD
from segmenter.moves import M_AT, M_EVENT, M_FROM, M_LENS, M_ROW, M_TO
from segmenter.outputs import Explanation, OutputMessage, SegmentChange, SegmentRef, encode_lines
from segmenter.rounding import round_half_even

if TYPE_CHECKING:
    from segmenter.events import CustomerEvent
    from segmenter.explanations import Explainer
    from segmenter.features import FeatureStore
    from segmenter.lenses.lens import Lens
    from segmenter.moves import MoveBuffer

__all__ = [
    "ENCODE_MOVES",
    "ChangeBuilder",
    "Output",
    "SegmentChanges",
    "encode_parts",
    "encode_runs",
    "messages_of",
    "runs",
    "size_of",
]

_KIND = "segment_change"
_Ints = np.ndarray[Any, np.dtype[np.int64]]
_NONE = -1


@dataclass(frozen=True, eq=False)
class SegmentChanges:
    """The ``segment_change`` messages of one move buffer, in order, as columns (see the module).

    Per move ``m``: ``lens[m]`` indexes ``lens_names``, ``versions`` and ``feature_names`` (as they were
    when the moves were made); ``from_ref``, ``to_ref`` and ``runner`` index ``refs`` (``-1``: none);
    ``cause[m]`` indexes ``causes``; ``version[m]`` is its lens's model version then; ``dist[m]`` its distance
    (``NaN``: none; :attr:`distance` rounds it to 6 places), ``raw[m, :d]`` its lens's ``d`` features
    (:attr:`features` rounds them to 4 places: the rounding waits until a block is written, one pass for many);
    ``raw``, ``z`` and ``contrib`` are the explanation's numbers per feature, ``top`` the chosen features (``-1``
    after the last), ``dists`` the distances to the old, new and runner-up segment (``NaN``: none), and
    ``explained[m]`` False where the lens had no scaler snapshot yet (:data:`~segmenter.explanations.NO_EXPLANATION`).
    """

    ids: list[str]
    lens: np.ndarray[Any, np.dtype[np.int64]]
    lens_names: list[str]
    version: np.ndarray[Any, np.dtype[np.int64]]
    feature_names: list[tuple[str, ...]]
    refs: list[SegmentRef]
    from_ref: np.ndarray[Any, np.dtype[np.int64]]
    to_ref: np.ndarray[Any, np.dtype[np.int64]]
    causes: list[str]
    cause: np.ndarray[Any, np.dtype[np.int64]]
    event_ids: list[str | None]
    event_ts: list[str]
    dist: np.ndarray[Any, np.dtype[np.float64]]
    explained: np.ndarray[Any, np.dtype[np.bool_]]
    raw: np.ndarray[Any, np.dtype[np.float64]]
    z: np.ndarray[Any, np.dtype[np.float64]]
    contrib: np.ndarray[Any, np.dtype[np.float64]]
    top: np.ndarray[Any, np.dtype[np.int64]]
    dists: np.ndarray[Any, np.dtype[np.float64]]
    runner: np.ndarray[Any, np.dtype[np.int64]]

    kind = _KIND

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def distance(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each move's distance rounded to 6 places (``NaN``: none)."""
        return round_half_even(self.dist, 6)

    @cached_property
    def features(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each move's features (``[m, :d]``, its lens's ``d``) rounded to 4 places."""
        return round_half_even(self.raw, 4)

    @classmethod
    def concat(cls, blocks: Sequence[SegmentChanges]) -> SegmentChanges:
        """One block holding the moves of ``blocks`` in order (of one core: the same lenses)."""
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]
        ref_table, ref_base = _joined([b.refs for b in blocks])
        cause_table, cause_base = _joined([b.causes for b in blocks])

        def refs(name: str) -> np.ndarray[Any, np.dtype[np.int64]]:
            parts = [getattr(b, name) for b in blocks]
            if not any(ref_base):
                return np.concatenate(parts)
            return np.concatenate([np.where(p >= 0, p + base, _NONE) for p, base in zip(parts, ref_base, strict=True)])

        def cat(name: str) -> Any:
            return np.concatenate([getattr(b, name) for b in blocks])

        causes = cat("cause") if not any(cause_base) else np.concatenate(
            [b.cause + base for b, base in zip(blocks, cause_base, strict=True)])  # fmt: skip
        return cls(
            [c for b in blocks for c in b.ids], cat("lens"), first.lens_names, cat("version"), first.feature_names,
            ref_table, refs("from_ref"), refs("to_ref"), cause_table, causes,
            [e for b in blocks for e in b.event_ids], [t for b in blocks for t in b.event_ts], cat("dist"),
            cat("explained"), cat("raw"), cat("z"), cat("contrib"), cat("top"), cat("dists"),
            refs("runner"),
        )  # fmt: skip

    def parts(self, size: int) -> Iterator[SegmentChanges]:
        """The moves in order as blocks of at most ``size`` moves (views of this one's columns; the tables shared)."""
        n = len(self)
        if n <= size:
            yield self
            return
        for a in range(0, n, size):
            b = min(n, a + size)
            yield SegmentChanges(
                self.ids[a:b], self.lens[a:b], self.lens_names, self.version[a:b], self.feature_names, self.refs,
                self.from_ref[a:b], self.to_ref[a:b], self.causes, self.cause[a:b], self.event_ids[a:b],
                self.event_ts[a:b], self.dist[a:b], self.explained[a:b], self.raw[a:b], self.z[a:b],
                self.contrib[a:b], self.top[a:b], self.dists[a:b], self.runner[a:b],
            )  # fmt: skip

    def cause_counts(self) -> dict[str, int]:
        """Moves per cause."""
        counts: dict[str, int] = {}
        for c, k in zip(self.causes, np.bincount(self.cause, minlength=len(self.causes)).tolist(), strict=True):
            if k:
                counts[c] = counts.get(c, 0) + k
        return counts

    def lens_cause_counts(self) -> dict[tuple[str, str], int]:
        """Moves per (lens, cause), in the order each pair first occurs."""
        causes = len(self.causes)
        pairs = self.lens * causes + self.cause
        present, first, counts = np.unique(pairs, return_index=True, return_counts=True)
        out: dict[tuple[str, str], int] = {}
        for i in np.argsort(first, kind="stable").tolist():
            lens, cause = divmod(int(present[i]), causes)
            key = (self.lens_names[lens], self.causes[cause])
            out[key] = out.get(key, 0) + int(counts[i])
        return out

    # ------------------------------------------------------------------ messages
    def messages(self) -> list[SegmentChange]:
        """The messages, in order (each field typed as the validating constructor keeps it)."""
        refs: list[SegmentRef | None] = [*self.refs, None]  # index -1: none
        names, causes = self.lens_names, self.causes
        isnan = math.isnan
        features = self._feature_dicts()
        whys = self._explanations(refs)
        wires = []
        for li, fr, to, cause, eid, ts, version, dist, feats, why, cid in zip(
            self.lens.tolist(), self.from_ref.tolist(), self.to_ref.tolist(), self.cause.tolist(), self.event_ids,
            self.event_ts, self.version.tolist(), self.distance.tolist(), features, whys, self.ids, strict=True,
        ):  # fmt: skip
            # every field in declaration order, each value typed already: no per-move validation
            wires.append({
                "kind": _KIND, "customer_id": cid, "lens": names[li], "from_segment": refs[fr],
                "to_segment": refs[to], "cause": causes[cause], "cause_event_id": eid, "event_ts": ts,
                "emitted_at": None, "model_version": version, "distance": None if isnan(dist) else dist,
                "features": feats, "explanation": why,
            })  # fmt: skip
        return SegmentChange.trusted_many(wires)

    def _feature_dicts(self) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{}] * len(self)
        for li, names in enumerate(self.feature_names):
            sel = np.flatnonzero(self.lens == li)
            for m, values in zip(sel.tolist(), self.features[sel, : len(names)].tolist(), strict=True):
                out[m] = dict(zip(names, values, strict=True))
        return out

    def _explanations(self, refs: list[SegmentRef | None]) -> list[Explanation]:
        """The explanations (see :func:`segmenter.explanations.explain_rows` for the numbers)."""
        isnan = math.isnan
        whys: list[Any] = [NO_EXPLANATION] * len(self)
        fnames, lens_of = self.feature_names, self.lens.tolist()
        sel = np.flatnonzero(self.explained)
        picked = [a[sel].tolist() for a in (self.raw, self.z, self.contrib, self.top, self.dists, self.runner)]
        rows = zip(sel.tolist(), *picked, strict=True)
        for m, values, x, c, chosen, (d_old, d_new, d_runner), run in rows:
            names = fnames[lens_of[m]]
            # -1 only after the last chosen feature
            top = [{"feature": names[j], "value": values[j], "z": x[j], "contribution": c[j]} for j in chosen if j >= 0]
            # every field in declaration order: floats (NaN: none), plain dicts and a SegmentRef
            whys[m] = {"top_features": top, "distance_to_old": None if isnan(d_old) else d_old,
                       "distance_to_new": None if isnan(d_new) else d_new, "runner_up": refs[run],
                       "distance_to_runner_up": None if run < 0 else d_runner}  # fmt: skip
        made = iter(Explanation.trusted_many(whys[m] for m in sel.tolist()))
        return [next(made) if isinstance(w, dict) else w for w in whys]

    # ------------------------------------------------------------------ bytes
    def encode_lines(self, emitted_at: str | None = None) -> bytes:
        """The messages as :func:`~segmenter.outputs.encode_lines` writes them, without building them."""
        if not len(self):
            return b""
        return change_lines(self, emitted_at)

    def lines(self, emitted_at: str | None = None) -> list[bytes]:
        """Each message as :func:`~segmenter.outputs.encode` writes it, in order (:meth:`encode_lines`, split).

        A line's only raw newline is its last byte: JSON writes a newline in a string as ``\\n``.
        """
        lines = self.encode_lines(emitted_at).split(b"\n")
        lines.pop()  # after the last newline: empty
        return lines


def _joined(tables: list[list[Any]]) -> tuple[list[Any], list[int]]:
    """The distinct ``tables`` (by identity: blocks share them) one after another, and each one's start in it."""
    if all(t is tables[0] for t in tables):
        return tables[0], [0] * len(tables)
    starts: dict[int, int] = {}
    joined: list[Any] = []
    for t in tables:
        if id(t) not in starts:
            starts[id(t)] = len(joined)
            joined.extend(t)
    return joined, [starts[id(t)] for t in tables]


Output = OutputMessage | SegmentChanges
"""One item of the core's outputs: a message, or a block standing for its ``segment_change`` messages."""


def size_of(part: Output) -> int:
    """The number of messages ``part`` stands for (a block's moves; a message is one)."""
    return len(part) if isinstance(part, SegmentChanges) else 1


def messages_of(parts: Iterable[Output]) -> list[OutputMessage]:
    """The messages of ``parts`` in order, every block replaced by its messages."""
    out: list[OutputMessage] = []
    for part in parts:
        if isinstance(part, SegmentChanges):
            out.extend(part.messages())
        else:
            out.append(part)
    return out


def runs(parts: Iterable[Output]) -> Iterator[list[OutputMessage] | SegmentChanges]:
    """``parts`` in order as runs: each run of messages as a list, each run of blocks as one block (concatenated:
    one compiled pass writes it)."""
    held: list[OutputMessage] = []
    blocks: list[SegmentChanges] = []
    for part in parts:
        if isinstance(part, SegmentChanges):
            if held:
                yield held
                held = []
            blocks.append(part)
        else:
            if blocks:
                yield SegmentChanges.concat(blocks)
                blocks = []
            held.append(part)
    if held:
        yield held
    if blocks:
        yield SegmentChanges.concat(blocks)


def encode_parts(parts: Iterable[Output], emitted_at: str | None = None) -> bytes:
    """The JSON lines of ``parts`` (:func:`~segmenter.outputs.encode_lines` of :func:`messages_of` them)."""
    return b"".join(encode_runs(parts, emitted_at))


ENCODE_MOVES = MMAP_THRESHOLD // LINE_ROOM - 16
"""Most moves of a block :func:`encode_runs` writes in one compiled pass (a longer run is written in parts).

So that the pass's buffers (:data:`~segmenter.change_lines.LINE_ROOM` bytes per line reserved, the lines' bytes
copied out, their numbers' text) stay below the allocator's :data:`~segmenter.malloc_tuning.MMAP_THRESHOLD`:
each larger block is a fresh mapping of the system's, and every page of it faults when first written. On the
sparse replay (80,900 lines, written 2,000 outputs at a time) a pass per whole run made 166,000 page faults,
0.53 s of system time on a loaded machine; one per part of at most this many moves 118,000 and 0.35 s (the
parts' bytes are the whole run's, cut between lines)."""


def encode_runs(parts: Iterable[Output], emitted_at: str | None = None) -> Iterator[bytes]:
    """:func:`encode_parts` a run at a time (see :func:`runs`), a long run of blocks in parts of at most
    :data:`ENCODE_MOVES` moves: for a writer, which need not join them."""
    for run in runs(parts):
        if isinstance(run, SegmentChanges):
            for part in run.parts(ENCODE_MOVES):
                yield part.encode_lines(emitted_at)
        else:
            yield encode_lines(run, emitted_at)


class ChangeBuilder:
    """Turns a move buffer into its :class:`SegmentChanges` block (lens membership counted on the way).

    What every block shares (the lenses' names and feature names, the columns of their features) is taken once;
    a block of a few moves (the dense event path hands over a handful at a time) costs a few numpy calls per
    lens, its per-move work is one Python pass over lists, and its numbers are rounded when it is written
    (:attr:`SegmentChanges.features`), for many blocks at once.

    Parameters
    ----------
    store, lenses, explainers
        The core's feature store, lenses and their explainers (read; the lenses' membership counts follow the
        moves).
    index
        Per lens, the columns of its features in the store's raw vectors.
    """

    def __init__(self, store: FeatureStore, lenses: Sequence[Lens], explainers: Sequence[Explainer],
                 index: Sequence[np.ndarray[Any, np.dtype[np.int64]]]) -> None:  # fmt: skip
        self._store = store
        self._lenses = lenses
        self._explainers = explainers
        self._d = d = max((len(ix) for ix in index), default=0)
        self._names = [lens.name for lens in lenses]
        self._causes: dict[str, list[str]] = {}
        self._table: _RefTable | None = None
        self._epochs: list[int] = []
        self._feature_names = [tuple(lens.feature_names) for lens in lenses]
        # per lens, the store columns of its features, padded with column 0 (read, then blanked to NaN)
        self._take = np.zeros((len(index), d), np.int64)
        self._pad = np.ones((len(index), d), np.bool_)
        for li, ix in enumerate(index):
            self._take[li, : len(ix)] = ix
            self._pad[li, : len(ix)] = False

    def block(self, buf: MoveBuffer, cause: str, events: Sequence[CustomerEvent] | None,
              stamp: int | None) -> SegmentChanges:  # fmt: skip
        """The buffered moves' block; ``cause``, ``events`` and ``stamp`` as for ``MoveEmitter.emit``."""
        n = len(buf)
        ints = buf.ints[:n]
        cols = ints.T.tolist()
        lens_of = ints[:, M_LENS].copy()
        refs = self._ref_table()
        cause_table = self._causes.get(cause) or self._causes.setdefault(cause, _cause_table(cause))
        from_ref, to_ref, causes = refs.moves(cols[M_LENS], cols[M_FROM], cols[M_TO], len(cause_table) - 1)
        event_ids = _event_ids(events, cause, cols[M_EVENT], causes)
        stamps = _event_stamps(events, cols[M_EVENT], cols[M_AT], stamp)
        # each move's lens features (padding: NaN), and the explanation's numbers (NaN, -1: none)
        raw = buf.values()[np.arange(n)[:, None], self._take[lens_of]]
        raw[self._pad[lens_of]] = np.nan
        d = self._d
        num = Numbers(np.full((n, d), np.nan), np.full((n, d), np.nan), np.full((n, TOP_FEATURES), -1, np.int64),
                      np.full((n, 3), np.nan), np.full(n, _NONE, np.int64))  # fmt: skip
        runner = num.runner.copy()
        explained = np.zeros(n, np.bool_)
        olds, news = ints[:, M_FROM], ints[:, M_TO]
        single = len(self._explainers) == 1
        for li, explainer in enumerate(self._explainers):
            sel = np.arange(n) if single else np.flatnonzero(lens_of == li)
            if len(sel) and explainer.fill(raw, sel, olds[sel], news[sel], num):
                explained[sel] = True
                runner[sel] = refs.lookup(li, num.runner[sel])
        versions = np.array([lens.model_version for lens in self._lenses], np.int64)
        return SegmentChanges(
            self._store.ids_of(ints[:, M_ROW]), lens_of, self._names, versions[lens_of], self._feature_names,
            refs.refs, np.array(from_ref, np.int64), np.array(to_ref, np.int64), cause_table,
            np.array(causes, np.int64), event_ids, stamps, buf.dist[:n].copy(), explained, raw, num.z, num.contrib,
            num.top, num.dist, runner,
        )  # fmt: skip

    def _ref_table(self) -> _RefTable:
        """The ref table of the blocks made while no lens's caches changed (its refs and names stay: see
        :meth:`~segmenter.lenses.lens.Lens.ref`); a new one after a change."""
        epochs = [lens.cache_epoch for lens in self._lenses]
        if self._table is None or epochs != self._epochs:
            self._table, self._epochs = _RefTable(self._lenses), epochs
        return self._table


def _cause_table(cause: str) -> list[str]:
    """A block's cause table: its cause, and ``model`` (a move out of a dead segment)."""
    return [cause] if cause == "model" else [cause, "model"]


class _RefTable:
    """The segment refs of the blocks of one period in which no lens's caches changed, each (lens, segment) looked
    up once (shared by those blocks, which index it; it only grows); counts the lenses' membership."""

    def __init__(self, lenses: Sequence[Lens]) -> None:
        self._lenses = lenses
        self.refs: list[SegmentRef] = []
        self._at: dict[tuple[int, int], int] = {}

    def index(self, li: int, segment: int) -> int:
        """The table index of lens ``li``'s ``segment`` (``-1`` for -1: none)."""
        if segment < 0:
            return _NONE
        i = self._at.get((li, segment))
        if i is None:
            i = self._at[li, segment] = len(self.refs)
            self.refs.append(self._lenses[li].ref(segment))
        return i

    def lookup(self, li: int, segments: _Ints) -> list[int]:
        """:meth:`index` of many segments of one lens."""
        index = self.index
        return [index(li, seg) for seg in segments.tolist()]

    def moves(self, lens_of: list[int], olds: list[int], news: list[int],
              model: int) -> tuple[list[int], list[int], list[int]]:  # fmt: skip
        """Per move: the left and entered refs' indices, and its cause (index into the block's causes, see
        :func:`_cause_table`): the block's (0), or ``model`` (the index of ``model``) where the segment left is
        dead. Counts each move in its lens's membership.

        (Python, per move: numpy's per-call cost would dominate the many small buffers of a dense stream.)
        """
        lenses, index, at = self._lenses, self.index, self._at.get
        left: dict[tuple[int, int], tuple[int, int]] = {}  # no move changes liveness
        froms, tos, causes = [], [], []
        for li, old, new in zip(lens_of, olds, news, strict=True):
            lens = lenses[li]
            lens.membership(None if old < 0 else old, None if new < 0 else new)
            if old < 0:
                fr, c = _NONE, 0
            elif (got := left.get((li, old))) is None:
                fr, c = left[li, old] = (index(li, old), 0 if lens.is_live(old) else model)
            else:
                fr, c = got
            froms.append(fr)
            # the table's look-up inlined where the ref is in it already (most moves): no call per move
            tos.append(_NONE if new < 0 else (to if (to := at((li, new))) is not None else index(li, new)))
            causes.append(c)
        return froms, tos, causes


def _event_ids(events: Sequence[CustomerEvent] | None, cause: str, evs: list[int],
               causes: list[int]) -> list[str | None]:  # fmt: skip
    """Each move's ``cause_event_id``: its event's id for a move of cause ``event`` (``causes[m] == 0``) made by an
    event, else ``None``."""
    if events is None or cause != "event":
        return [None] * len(evs)
    return [events[ev].event_id if ev >= 0 and c == 0 else None for ev, c in zip(evs, causes, strict=True)]


def _event_stamps(events: Sequence[CustomerEvent] | None, evs: list[int], ats: list[int],
                  stamp: int | None) -> list[str]:  # fmt: skip
    """Each move's ``event_ts``: the ISO time of ``stamp``; without one, its event's ``ts`` where it has one, else
    the ISO time of ``ats``.

    Memoised: the lenses' moves of one event share its time, and most moves of a sweep share theirs.
    """
    if stamp is not None:
        return [iso(stamp)] * len(evs)
    by_event: dict[int, str] = {}
    by_time: dict[int, str] = {}
    out = []
    for ev, at in zip(evs, ats, strict=True):
        if ev >= 0 and events is not None:
            ts = by_event.get(ev)
            if ts is None:
                ts = by_event[ev] = events[ev].ts.isoformat()
        else:
            ts = by_time.get(at)
            if ts is None:
                ts = by_time[at] = iso(at)
        out.append(ts)
    return out
