"""Building a pydantic model instance from values that already have their fields' types, without validation.

The hot paths (one ``segment_change`` per move, one event per input line) hand
over values the validating constructor would keep unchanged; :func:`build`
gives the instance that constructor gives (the same ``__dict__`` in declaration
order, the same fields set), without its cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["adopt", "build"]

M = TypeVar("M", bound=BaseModel)

_SLOTS: dict[str, Any] = dict(vars(BaseModel))
_SET_DICT, _SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE = (
    _SLOTS[name].__set__
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def build(cls: type[M], given: Iterable[str], *values: Mapping[str, Any]) -> M:
    """An instance of ``cls`` holding ``values`` merged in order (every field, in declaration order).

    ``given`` is its fields set (the names the input gave). Only for models without extra fields
    or private attributes.
    """
    model = object.__new__(cls)
    fields = model.__dict__  # a new object's own (empty) dict
    for part in values:
        fields.update(part)
    _SET_FIELDS_SET(model, set(given))
    _SET_EXTRA(model, None)
    _SET_PRIVATE(model, None)
    return model


def adopt(cls: type[M], given: frozenset[str], complete: Iterable[dict[str, Any]]) -> list[M]:
    """One instance of ``cls`` per dict of ``complete``, each dict becoming that instance's ``__dict__`` (not copied).

    As :func:`build` with each dict already holding every field in declaration order (the caller's
    hot path writes the literal); ``given`` is every instance's fields set. Only for models without
    extra fields or private attributes.
    """
    new = object.__new__
    set_dict, set_fields, set_extra, set_private = _SET_DICT, _SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE
    out = []
    for fields in complete:
        model = new(cls)
        set_dict(model, fields)
        set_fields(model, set(given))
        set_extra(model, None)
        set_private(model, None)
        out.append(model)
    return out
