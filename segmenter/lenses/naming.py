"""Segment profiles and readable names derived from z-scores.

A segment's *z-scores* are its center in scaled space: how many population
standard deviations (after ``log1p`` for heavy-tailed features) the segment sits
from the population mean on each feature. Names are built from the features
with the largest ``|z|``, e.g. ``"high spend · frequent · recent"``, and are made
unique within a lens; a config override (segment number -> name) wins.

A relative word also needs an absolute footing where one exists
(:data:`ABSOLUTE`): given the segment's center in original units, a segment
whose recency stands out above the population's is "lapsed" only beyond 60
days ("cooling" from 30), and "recent" only within 30 days.

Examples
--------
>>> derive_name({"recency_days": -1.2, "frequency": 0.9, "spend": 1.5})
'high spend · recent · frequent'
>>> derive_name({"recency_days": -1.4, "net_spend": 0.2}, values={"recency_days": 0.8, "net_spend": 40.0})
'recent'
>>> derive_name({"recency_days": 12.2, "orders": 1.3}, values={"recency_days": 11.9, "orders": 1.1})
'repeat'
>>> derive_name({"recency_days": 1.4}, values={"recency_days": 45.0})
'cooling'
>>> derive_name({"spend": 0.1})
'typical'
>>> names = unique_names({1: {"spend": 1.0}, 2: {"spend": 1.2, "aov": -0.3}}, {})
>>> names[1], names[2]
('high spend', 'high spend · small baskets')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ABSOLUTE", "FEATURE_WORDS", "SegmentProfile", "derive_name", "still_fits", "unique_names"]

logger = logging.getLogger(__name__)

#: (word when the segment is low, word when it is high) per feature.
FEATURE_WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("recent", "lapsed"),
    "tenure_days": ("new", "long-standing"),
    "frequency": ("infrequent", "frequent"),
    "spend": ("low spend", "high spend"),
    "aov": ("small baskets", "big baskets"),
    "sessions": ("few sessions", "many sessions"),
    "product_views": ("few views", "many views"),
    "cart_adds": ("few cart adds", "many cart adds"),
    "cart_abandonment": ("completes carts", "abandons carts"),
    "conversion": ("low conversion", "high conversion"),
    "email_engagement": ("email-quiet", "email-engaged"),
    "refund_rate": ("few refunds", "many refunds"),
    "orders": ("infrequent", "frequent"),
    "net_spend": ("low spend", "high spend"),
}
"""``orders`` and ``net_spend`` (lifetime) share the words of ``frequency`` and ``spend`` (decayed): what a
marketer calls frequency and monetary value in RFM. A lens should hold one of each pair."""

#: Features whose word also depends on the segment's value in original units, so that a name stays true in
#: absolute terms whatever the population: (upper bound of the low word, lower bound of the high word, the
#: word in between). ``recency_days`` reads "recent" up to 30 days, "lapsed" beyond 60, "cooling" in between;
#: ``tenure_days`` reads "new" up to 30 days, "long-standing" from 180, "established" in between;
#: ``orders`` (lifetime) reads "infrequent" up to 1 order, "frequent" beyond 3, "repeat" in between (a
#: segment of one-order customers is not "frequent" because everyone else has none yet). A low or high word
#: that contradicts the segment's z-score is not used at all (:func:`_word`).
ABSOLUTE: dict[str, tuple[float, float, str]] = {
    "recency_days": (30.0, 60.0, "cooling"),
    "tenure_days": (30.0, 180.0, "established"),
    "orders": (1.0, 3.0, "repeat"),
}

#: Smallest |z| that makes a feature part of a name.
NAME_Z = 0.5
#: At most this many features in a derived name.
NAME_TERMS = 3
#: A previous name's terms stay valid down to this |z| (name hysteresis).
KEEP_Z = 0.25
#: A feature missing from a previous name forces a rename from this |z| on.
STRONG_Z = 1.0
SEPARATOR = " · "
TYPICAL = "typical"


@dataclass(frozen=True)
class SegmentProfile:
    """What a segment looks like.

    Attributes
    ----------
    segment
        Stable segment number (the ``n`` of ``f"{lens}-{n}"``).
    id, name
        As in :class:`~segmenter.outputs.SegmentRef`.
    size
        Customers currently in the segment (kept by ``Lens.membership``).
    centroid
        Center in original feature units.
    z
        Center in scaled space (standard deviations from the population mean).
    status
        ``live``, ``merged`` or ``retired``.
    rule
        The segment's rule (:meth:`~segmenter.lenses.surrogate.SegmentRule.as_dict`: text, conditions,
        fidelity), once a refinement fitted one.
    """

    segment: int
    id: str
    name: str
    size: int
    centroid: dict[str, float] = field(default_factory=dict)
    z: dict[str, float] = field(default_factory=dict)
    status: str = "live"
    rule: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, used as the ``profile`` of lifecycle messages (``rule`` only once fitted)."""
        out: dict[str, Any] = {
            "size": self.size,
            "centroid": {k: round(v, 6) for k, v in self.centroid.items()},
            "z": {k: round(v, 4) for k, v in self.z.items()},
            "status": self.status,
        }
        if self.rule is not None:
            out["rule"] = self.rule
        return out


def _word(feature: str, z: float, value: float | None = None) -> str | None:
    """The feature's word for a segment at ``z`` (and ``value`` in original units), or None when none is true.

    An :data:`ABSOLUTE` feature's word follows its value; where that word says the opposite of ``z`` (a
    segment 12 standard deviations *less* recent than everyone, 11.9 days ago: "recent" is true in days and
    false as what sets it apart), the feature gets no word: it stands out, but no word says how truthfully.
    """
    low, high = FEATURE_WORDS.get(feature, (f"low {feature}", f"high {feature}"))
    bounds = ABSOLUTE.get(feature)
    if bounds is None or value is None:
        return high if z > 0 else low
    below, above, between = bounds
    if value <= below:
        return low if z <= 0 else None
    if value > above:
        return high if z >= 0 else None
    return between


def _all_words(feature: str) -> list[tuple[str, bool | None]]:
    """Every word a feature can get, with the direction it claims (None: either)."""
    low, high = FEATURE_WORDS.get(feature, (f"low {feature}", f"high {feature}"))
    words: list[tuple[str, bool | None]] = [(low, False), (high, True)]
    if feature in ABSOLUTE:
        words.append((ABSOLUTE[feature][2], None))
    return words


def _ranked(z: Mapping[str, float]) -> list[tuple[str, float]]:
    # Largest |z| first; ties broken by feature name for determinism.
    return sorted(z.items(), key=lambda kv: (-abs(kv[1]), kv[0]))


def derive_name(
    z: Mapping[str, float],
    terms: int = NAME_TERMS,
    min_z: float = NAME_Z,
    values: Mapping[str, float] | None = None,
) -> str:
    """Name from the ``terms`` features with the largest ``|z| >= min_z``; ``'typical'`` if none stands out.

    ``values`` (the center in original units) gives :data:`ABSOLUTE` features their absolute word.
    """
    vals = values or {}
    found = (_word(f, v, vals.get(f)) for f, v in _ranked(z) if abs(v) >= min_z)
    words = [w for w in found if w is not None][:terms]
    return SEPARATOR.join(words) if words else TYPICAL


def _terms(name: str, features: Mapping[str, float]) -> list[tuple[str, str, bool | None]] | None:
    """Parse a derived name back into (feature, word, is_high) terms; None when it is not a derived name."""
    base = name.split(" #", 1)[0]
    if base == TYPICAL:
        return []
    lookup: dict[str, tuple[str, str, bool | None]] = {}
    for f in features:
        for word, high in _all_words(f):
            lookup[word] = (f, word, high)
    out = []
    for word in base.split(SEPARATOR):
        term = lookup.get(word)
        if term is None:
            return None
        out.append(term)
    return out


def still_fits(name: str, z: Mapping[str, float], values: Mapping[str, float] | None = None) -> bool:
    """Whether a previous derived name still describes a segment (name hysteresis).

    Every term must keep its direction with ``|z| >= KEEP_Z`` (and its absolute
    word, given ``values``), and no feature left out may have become strong
    (``|z| >= STRONG_Z`` and above the weakest term).
    """
    terms = _terms(name, z)
    if terms is None:
        return False
    if not terms:  # "typical" stays true only while no feature stands out
        return all(abs(v) < NAME_Z for v in z.values())
    vals = values or {}
    weakest = math.inf
    named = set()
    for feature, word, high in terms:
        v = z[feature]
        if abs(v) < KEEP_Z or (high is not None and (v > 0) != high):
            return False
        if feature in ABSOLUTE and feature in vals and _word(feature, v, vals[feature]) != word:
            return False
        weakest = min(weakest, abs(v))
        named.add(feature)
    return all(abs(v) < STRONG_Z or abs(v) <= weakest for f, v in z.items() if f not in named)


def unique_names(
    zs: Mapping[int, Mapping[str, float]],
    overrides: Mapping[int, str],
    previous: Mapping[int, str] | None = None,
    values: Mapping[int, Mapping[str, float]] | None = None,
) -> dict[int, str]:
    """Names for every segment in ``zs``, unique among them.

    Overrides are taken as they are. A segment whose previous name still fits
    (:func:`still_fits`) keeps it. Otherwise a segment gets its derived name; on
    a clash, segments (in number order) add more features, including weaker
    ones, and finally a ``#n`` suffix. ``values`` (segment -> center in
    original units) gives :data:`ABSOLUTE` features their absolute words.
    """
    previous = previous or {}
    values = values or {}
    taken = {n: overrides[n] for n in zs if n in overrides}
    used = {_key(name) for name in taken.values()}
    pending = [n for n in sorted(zs) if n not in taken]
    # Segments whose previous name still fits keep it (first come, in number order), so renames stay rare.
    for n in pending:
        prev = previous.get(n)
        if prev and _key(prev) not in used and still_fits(prev, zs[n], values.get(n)):
            taken[n] = prev
            used.add(_key(prev))
    for n in pending:
        if n in taken:
            continue
        z = zs[n]
        v = values.get(n)
        candidates = [derive_name(z, values=v)]
        for terms in range(NAME_TERMS + 1, len(z) + 1):
            candidates.append(derive_name(z, terms=terms, values=v))
        for terms in range(1, len(z) + 1):
            candidates.append(derive_name(z, terms=terms, min_z=0.0, values=v))
        name = next((c for c in candidates if _key(c) not in used), None)
        if name is None:
            name = f"{candidates[0]} #{n}"
        used.add(_key(name))
        taken[n] = name
    return dict(sorted(taken.items()))


def _key(name: str) -> frozenset[str]:
    """What a name says, regardless of term order: "high spend · frequent" and
    "frequent · high spend" describe the same segment and must not both be used."""
    return frozenset(name.split(SEPARATOR))
