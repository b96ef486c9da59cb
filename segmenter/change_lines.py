"""The JSON lines of a :class:`~segmenter.change_blocks.SegmentChanges` block, written in one compiled pass.

Python prepares a table of text pieces (:class:`~segmenter.line_writer.Pieces`:
every string as orjson writes it, refs, keys and the constant parts between
them) and the numbers (:class:`~segmenter.line_writer.Numbers`: one
:func:`orjson.dumps` of all of them); :func:`_write` copies, per move, the
pieces and numbers of a ``segment_change`` line in the order of its fields
(:class:`~segmenter.outputs.SegmentChange`), so the bytes are those
:func:`~segmenter.outputs.encode_lines` writes for the block's messages.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson
from numba import njit

from segmenter.explanations import NO_EXPLANATION, TOP_FEATURES
from segmenter.line_writer import Numbers, Pieces, number_spans

if TYPE_CHECKING:
    from collections.abc import Sequence

    from segmenter.change_blocks import SegmentChanges

__all__ = ["LINE_ROOM", "change_lines"]

LINE_ROOM = 1024
"""Bytes of output buffer :func:`_write` reserves per line at first (it grows the buffer for longer lines)."""

_Ints = np.ndarray[Any, np.dtype[np.int64]]

# per move, the piece of each of these (columns of ``slots``)
_ID, _LENS, _FROM, _TO, _CAUSE, _EVENT, _TS, _VERSION, _RUNNER = range(9)
# the constant pieces (indices into ``consts``)
_CONSTANTS = (
    b'{"kind":"segment_change","customer_id":', b',"to_segment":', b',"event_ts":', b'},"explanation":',
    b'{"top_features":[', b',"z":', b',"contribution":', b'}],"distance_to_old":', b'],"distance_to_old":',
    b',"distance_to_new":', b',"runner_up":', b',"distance_to_runner_up":', b"}}\n",
    orjson.dumps(NO_EXPLANATION.model_dump(mode="json")) + b"}\n",
)  # fmt: skip
_KIND, _TO_KEY, _TS_KEY, _EXPLANATION, _TOPS, _Z, _CONTRIB, _CLOSE_TOP, _CLOSE_NONE, _NEW, _RUNNER_KEY = range(11)
_RUN_DIST, _END, _UNEXPLAINED = 11, 12, 13


class _Fixed(NamedTuple):
    """The pieces every block of one set of lenses writes (the first pieces of its table) and their indices."""

    blob: bytes
    lengths: list[int]
    consts: _Ints
    lens: _Ints
    """Per lens: ``,"lens":NAME,"from_segment":``."""
    keys: _Ints
    """Per lens and feature (see :func:`_keys`)."""
    entries: _Ints
    widths: _Ints
    """Per lens: its number of features."""


@lru_cache(maxsize=16)
def _fixed(lens_names: tuple[str, ...], feature_names: tuple[tuple[str, ...], ...], d: int) -> _Fixed:
    """The constant pieces, the lens pieces and the feature keys of blocks of these lenses (made once: a core's
    lenses keep their names and features)."""
    text = Pieces()
    consts = np.array([text.add(c) for c in _CONSTANTS], np.int64)
    lens = np.array([text.add(b',"lens":' + orjson.dumps(nm) + b',"from_segment":') for nm in lens_names], np.int64)
    keys, entries = _keys(feature_names, d, text)
    widths = np.array([len(names) for names in feature_names], np.int64)
    blob, offsets = text.arrays()
    return _Fixed(blob.tobytes(), np.diff(offsets).tolist(), consts, lens, keys, entries, widths)


def change_lines(block: SegmentChanges, emitted_at: str | None) -> bytes:
    """``block``'s messages as JSON lines (see the module), ``emitted_at`` in each."""
    n, d = block.features.shape
    fixed = _fixed(tuple(block.lens_names), tuple(block.feature_names), d)
    text = Pieces()
    text.extend(fixed.blob, fixed.lengths)  # the table's first pieces: at the indices ``fixed`` holds
    picked = np.maximum(block.top, 0)
    rows = np.arange(n)[:, None]
    # the numbers, in this order: distance, features (n x d), top value, z, contribution (n x TOP each), dists (n x 3)
    numbers = Numbers(np.concatenate([block.distance, block.features.reshape(-1), block.raw[rows, picked].reshape(-1),
                                      block.z[rows, picked].reshape(-1), block.contrib[rows, picked].reshape(-1),
                                      block.dists.reshape(-1)]))  # fmt: skip
    slots = np.column_stack(_slots(block, text, fixed.lens, orjson.dumps(emitted_at)))
    blob, offsets = text.arrays()
    out = _write(slots, block.lens, block.top, block.explained, fixed.widths, fixed.keys, fixed.entries,
                 fixed.consts, blob, offsets, numbers.array(), d)  # fmt: skip
    return out.tobytes()  # type: ignore[no-any-return]


def _slots(block: SegmentChanges, text: Pieces, lens: np.ndarray[Any, np.dtype[np.int64]],
           stamp: bytes) -> list[np.ndarray[Any, np.dtype[np.int64]]]:  # fmt: skip
    """Per move, the piece of each slot (``_ID`` ... ``_RUNNER``); ``lens``: each lens's piece."""
    dumps = orjson.dumps
    refs = np.array([text.add(dumps(r.__dict__)) for r in block.refs] + [text.add(b"null")], np.int64)
    causes = np.array([text.add(b',"cause":' + dumps(c) + b',"cause_event_id":') for c in block.causes], np.int64)
    versions, at = np.unique(block.version, return_inverse=True)
    head = b',"emitted_at":' + stamp + b',"model_version":'
    version = np.array([text.add(head + dumps(v) + b',"distance":') for v in versions.tolist()], np.int64)
    ids = text.strings(block.ids) + np.arange(len(block), dtype=np.int64)
    return [ids, lens[block.lens], refs[block.from_ref], refs[block.to_ref], causes[block.cause],
            _strings(block.event_ids, text), _strings(block.event_ts, text), version[at.reshape(-1)],
            refs[block.runner]]  # fmt: skip


def _strings(values: Sequence[str | None], text: Pieces) -> np.ndarray[Any, np.dtype[np.int64]]:
    """One JSON string (or ``null``) per move: each distinct value added once."""
    distinct = [v for v in dict.fromkeys(values) if v is not None]
    first = text.strings(distinct)
    table: dict[str | None, int] = {v: first + i for i, v in enumerate(distinct)}
    table[None] = text.add(b"null")
    return np.fromiter(map(table.__getitem__, values), np.int64, len(values))


def _keys(feature_names: Sequence[tuple[str, ...]], d: int, text: Pieces) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:  # fmt: skip
    """Per lens and feature: the piece before its value in ``features``, and before a top feature's value
    (``[0]``: the first entry, ``[1]``: a later one)."""
    dumps = orjson.dumps
    keys = np.zeros((len(feature_names), d), np.int64)
    entries = np.zeros((2, len(feature_names), d), np.int64)
    for li, names in enumerate(feature_names):
        for j, name in enumerate(names):
            keys[li, j] = text.add((b',"features":{' if j == 0 else b",") + dumps(name) + b":")
            entries[0, li, j] = text.add(b'{"feature":' + dumps(name) + b',"value":')
            entries[1, li, j] = text.add(b'},{"feature":' + dumps(name) + b',"value":')
    return keys, entries


@njit(cache=True)
def _put(out: Any, w: int, src: Any, a: int, b: int) -> int:  # pragma: no cover
    """Copy ``src[a:b]`` to ``out[w:]``; the position after it.

    Called, not inlined: inlined at the line's ~40 pieces and numbers they made :func:`_write`'s cached code 610 KB
    (loaded from numba's cache at every start, ~30 ms; compiled in 13 s); called, 212 KB (~12 ms; 3 s).
    """
    # short pieces: a loop beats a slice copy; unsigned indices (all are >= 0) skip the check for a negative
    # index on every byte
    for i in range(b - a):
        out[np.uint64(w + i)] = src[np.uint64(a + i)]
    return w + b - a


@njit(cache=True, inline="always")
def _piece(out: Any, w: int, i: int, text: Any, offsets: Any) -> int:  # pragma: no cover
    return _put(out, w, text, offsets[i], offsets[i + 1])


@njit(cache=True, inline="always")
def _number(out: Any, w: int, j: int, numbers: Any, starts: Any) -> int:  # pragma: no cover
    return _put(out, w, numbers, starts[j], starts[j + 1] - 1)


@njit(cache=True, inline="always")
def _line(g: Any, m: int, out: Any, w: int) -> int:
    """Move ``m``'s line into ``out`` from ``w`` on; the position after it."""
    slots, lens, top, explained, widths, keys, entries, consts, text, offsets, numbers, starts, d = g
    n = slots.shape[0]
    feats, tops = n, n + n * d  # where the features and the top features' numbers start
    dists = tops + 3 * TOP_FEATURES * n
    li = lens[m]
    s = slots[m]
    w = _piece(out, w, consts[_KIND], text, offsets)
    for slot in (_ID, _LENS, _FROM):
        w = _piece(out, w, s[slot], text, offsets)
    w = _piece(out, w, consts[_TO_KEY], text, offsets)
    for slot in (_TO, _CAUSE, _EVENT):
        w = _piece(out, w, s[slot], text, offsets)
    w = _piece(out, w, consts[_TS_KEY], text, offsets)
    w = _piece(out, w, s[_TS], text, offsets)
    w = _piece(out, w, s[_VERSION], text, offsets)
    w = _number(out, w, m, numbers, starts)
    for k in range(widths[li]):
        w = _piece(out, w, keys[li, k], text, offsets)
        w = _number(out, w, feats + m * d + k, numbers, starts)
    w = _piece(out, w, consts[_EXPLANATION], text, offsets)
    if not explained[m]:
        return _piece(out, w, consts[_UNEXPLAINED], text, offsets)
    w = _piece(out, w, consts[_TOPS], text, offsets)
    for k in range(TOP_FEATURES):
        j = top[m, k]
        if j < 0:
            break
        at = tops + m * TOP_FEATURES + k
        w = _piece(out, w, entries[min(k, 1), li, j], text, offsets)
        w = _number(out, w, at, numbers, starts)
        w = _piece(out, w, consts[_Z], text, offsets)
        w = _number(out, w, at + TOP_FEATURES * n, numbers, starts)
        w = _piece(out, w, consts[_CONTRIB], text, offsets)
        w = _number(out, w, at + 2 * TOP_FEATURES * n, numbers, starts)
    w = _piece(out, w, consts[_CLOSE_TOP if top[m, 0] >= 0 else _CLOSE_NONE], text, offsets)
    w = _number(out, w, dists + 3 * m, numbers, starts)
    w = _piece(out, w, consts[_NEW], text, offsets)
    w = _number(out, w, dists + 3 * m + 1, numbers, starts)
    w = _piece(out, w, consts[_RUNNER_KEY], text, offsets)
    w = _piece(out, w, s[_RUNNER], text, offsets)
    w = _piece(out, w, consts[_RUN_DIST], text, offsets)
    w = _number(out, w, dists + 3 * m + 2, numbers, starts)
    w = _piece(out, w, consts[_END], text, offsets)
    return w


@njit(cache=True)
def _write(slots: Any, lens: Any, top: Any, explained: Any, widths: Any, keys: Any, entries: Any, consts: Any,  # noqa: PLR0913, PLR0917
           text: Any, offsets: Any, numbers: Any, d: int) -> Any:  # fmt: skip  # pragma: no cover - compiled
    starts = number_spans(numbers)
    g = (slots, lens, top, explained, widths, keys, entries, consts, text, offsets, numbers, starts, d)
    # at most this many pieces and numbers in a line, each at most as long as the longest
    longest = (20 + d + 4 * TOP_FEATURES) * (np.max(offsets[1:] - offsets[:-1]) + np.max(starts[1:] - starts[:-1]))
    out = np.empty(max(4096, LINE_ROOM * slots.shape[0]), np.uint8)
    w = 0
    for m in range(slots.shape[0]):
        if w + longest > len(out):
            grown = np.empty(2 * len(out) + longest, np.uint8)
            grown[:w] = out[:w]
            out = grown
        w = _line(g, m, out, w)
    return out[:w]
