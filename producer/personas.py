"""Customer personas: the behavioural parameters the simulator draws from.

Each persona is chosen to land clearly apart in the segmenter's features
(``docs/internals.md``, "Features"):

============================ ========= ======== ========= ========= ========== ===========
persona                      sessions  purchase mean      cart      email      refund
                             per week  per sess amount    adds/view (open/clk) per purch.
============================ ========= ======== ========= ========= ========== ===========
``loyal_high_value``         3.0       0.45     140       0.35      0.60/0.30  0.02
``bargain_hunter``           4.0       0.20     28        0.40      0.70/0.50  0.10
``window_shopper``           5.0       0.02     45        0.30      0.15/0.03  0.05
``new_explorer``             2.0       0.08     40        0.15      0.40/0.15  0.05
``lapsing``                  1.5 (*)   0.10     70        0.20      0.10/0.01  0.05
============================ ========= ======== ========= ========= ========== ===========

(*) ``lapsing`` activity halves every 10 days after the customer became
lapsing, so its recency grows and its decayed activity fades.

In feature terms: loyal = high frequency, spend and AOV, low recency, low
abandonment; bargain hunter = many views and searches, frequent small orders,
highest e-mail clicks and refund rate; window shopper = most sessions and
product views, highest cart abandonment, near-zero conversion; new explorer =
short tenure (arrives with ``signup``), few sessions, low spend; lapsing =
recency growing, activity and e-mail decaying towards zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Persona:
    """Behavioural parameters of one persona.

    Attributes
    ----------
    name
        Stable identifier written to the truth file.
    sessions_per_week
        Mean rate of sessions (a Poisson process) when the persona starts.
    activity_half_life_days
        If set, the session rate halves every this many days after the
        customer took on the persona (``lapsing``); ``None`` = constant.
    page_views, product_views, searches
        Poisson means per session.
    cart_add_prob
        Probability that a product view is followed by ``add_to_cart``.
    remove_prob
        Probability that a cart item is removed again.
    purchase_prob
        Probability that a session ends in a purchase (with a cart add,
        ``checkout_start`` and ``purchase``).
    checkout_abandon_prob
        Probability that a session with a cart but no purchase reaches
        ``checkout_start`` (an abandoned checkout).
    mean_amount, amount_sigma
        Log-normal order amount: its mean and the sigma of ``log(amount)``.
    refund_prob
        Probability that a purchase is fully refunded 2–20 days later.
    email_open_prob, email_click_prob
        Probability of opening a marketing e-mail, and of clicking given an open.
    categories
        Product categories and their weights.
    """

    name: str
    sessions_per_week: float
    page_views: float
    product_views: float
    searches: float
    cart_add_prob: float
    remove_prob: float
    purchase_prob: float
    checkout_abandon_prob: float
    mean_amount: float
    amount_sigma: float
    refund_prob: float
    email_open_prob: float
    email_click_prob: float
    categories: tuple[tuple[str, float], ...]
    activity_half_life_days: float | None = None

    def __post_init__(self) -> None:
        for field in (
            "cart_add_prob",
            "remove_prob",
            "purchase_prob",
            "checkout_abandon_prob",
            "refund_prob",
            "email_open_prob",
            "email_click_prob",
        ):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"persona {self.name}: {field} must be in [0, 1], got {value}")
        for field in ("sessions_per_week", "page_views", "product_views", "searches", "mean_amount", "amount_sigma"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"persona {self.name}: {field} must be finite and >= 0, got {value}")
        if self.mean_amount <= 0:
            raise ValueError(f"persona {self.name}: mean_amount must be > 0")
        if not self.categories or any(w <= 0 for _, w in self.categories):
            raise ValueError(f"persona {self.name}: categories need positive weights")

    @property
    def amount_mu(self) -> float:
        """``mu`` of the log-normal so that its mean is :attr:`mean_amount`."""
        return math.log(self.mean_amount) - self.amount_sigma**2 / 2

    @property
    def sessions_per_day(self) -> float:
        """Initial session rate per day."""
        return self.sessions_per_week / 7.0


_CATS = ("electronics", "fashion", "home", "beauty", "grocery", "sports", "books", "toys")


def _cats(*weights: float) -> tuple[tuple[str, float], ...]:
    return tuple((c, w) for c, w in zip(_CATS, weights, strict=True) if w > 0)


LOYAL_HIGH_VALUE = Persona(
    name="loyal_high_value",
    sessions_per_week=3.0,
    page_views=3.0,
    product_views=4.0,
    searches=0.5,
    cart_add_prob=0.35,
    remove_prob=0.05,
    purchase_prob=0.45,
    checkout_abandon_prob=0.2,
    mean_amount=140.0,
    amount_sigma=0.5,
    refund_prob=0.02,
    email_open_prob=0.6,
    email_click_prob=0.3,
    categories=_cats(3, 2, 3, 2, 1, 1, 1, 0.5),
)
BARGAIN_HUNTER = Persona(
    name="bargain_hunter",
    sessions_per_week=4.0,
    page_views=4.0,
    product_views=8.0,
    searches=3.0,
    cart_add_prob=0.4,
    remove_prob=0.35,
    purchase_prob=0.2,
    checkout_abandon_prob=0.5,
    mean_amount=28.0,
    amount_sigma=0.6,
    refund_prob=0.10,
    email_open_prob=0.7,
    email_click_prob=0.5,
    categories=_cats(1, 3, 1, 2, 4, 1, 1, 2),
)
WINDOW_SHOPPER = Persona(
    name="window_shopper",
    sessions_per_week=5.0,
    page_views=6.0,
    product_views=10.0,
    searches=1.5,
    cart_add_prob=0.3,
    remove_prob=0.3,
    purchase_prob=0.02,
    checkout_abandon_prob=0.4,
    mean_amount=45.0,
    amount_sigma=0.7,
    refund_prob=0.05,
    email_open_prob=0.15,
    email_click_prob=0.03,
    categories=_cats(3, 4, 2, 1, 0.5, 2, 1, 1),
)
NEW_EXPLORER = Persona(
    name="new_explorer",
    sessions_per_week=2.0,
    page_views=5.0,
    product_views=3.0,
    searches=1.0,
    cart_add_prob=0.15,
    remove_prob=0.2,
    purchase_prob=0.08,
    checkout_abandon_prob=0.3,
    mean_amount=40.0,
    amount_sigma=0.6,
    refund_prob=0.05,
    email_open_prob=0.4,
    email_click_prob=0.15,
    categories=_cats(1, 1, 1, 1, 1, 1, 1, 1),
)
LAPSING = Persona(
    name="lapsing",
    sessions_per_week=1.5,
    page_views=2.0,
    product_views=2.0,
    searches=0.3,
    cart_add_prob=0.2,
    remove_prob=0.2,
    purchase_prob=0.10,
    checkout_abandon_prob=0.3,
    mean_amount=70.0,
    amount_sigma=0.6,
    refund_prob=0.05,
    email_open_prob=0.10,
    email_click_prob=0.01,
    categories=_cats(2, 2, 2, 1, 1, 1, 1, 1),
    activity_half_life_days=10.0,
)

DEFAULT_PERSONAS: tuple[Persona, ...] = (LOYAL_HIGH_VALUE, BARGAIN_HUNTER, WINDOW_SHOPPER, NEW_EXPLORER, LAPSING)
"""The built-in personas, in a fixed order (their index is used internally)."""

DEFAULT_INITIAL_MIX: Mapping[str, float] = MappingProxyType(
    {
        "loyal_high_value": 0.15,
        "bargain_hunter": 0.25,
        "window_shopper": 0.25,
        "new_explorer": 0.15,
        "lapsing": 0.20,
    }
)
"""Persona shares of the customers present at the start of a run."""

DEFAULT_ARRIVAL_MIX: Mapping[str, float] = MappingProxyType(
    {
        "loyal_high_value": 0.05,
        "bargain_hunter": 0.15,
        "window_shopper": 0.15,
        "new_explorer": 0.65,
    }
)
"""Persona shares of customers arriving (with a ``signup``) during a run."""

DEFAULT_DRIFT: Mapping[str, tuple[tuple[str, float], ...]] = MappingProxyType(
    {
        "loyal_high_value": (("lapsing", 1.0),),
        "bargain_hunter": (("loyal_high_value", 1.0),),
        "window_shopper": (("bargain_hunter", 1.0),),
        "new_explorer": (("loyal_high_value", 0.5), ("bargain_hunter", 0.5)),
        "lapsing": (("bargain_hunter", 1.0),),
    }
)
"""Where a drifting customer goes: from persona -> ((to persona, weight), ...)."""


def parse_mix(text: str, personas: tuple[Persona, ...] = DEFAULT_PERSONAS) -> dict[str, float]:
    """Parse ``"name=weight,name=weight"`` into a persona mix.

    Raises
    ------
    ValueError
        Unknown persona name, a weight that is not a non-negative number, or all weights zero.

    Examples
    --------
    >>> parse_mix("lapsing=1, loyal_high_value=3")
    {'lapsing': 1.0, 'loyal_high_value': 3.0}
    """
    names = {p.name for p in personas}
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ValueError(
                f"bad persona mix entry {part.strip()!r}: expected NAME=WEIGHT with NAME one of "
                f"{', '.join(sorted(names))}"
            )
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"bad weight in {part.strip()!r}: not a number") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"bad weight in {part.strip()!r}: must be >= 0")
        mix[name] = value
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("a persona mix needs at least one positive weight")
    return mix
