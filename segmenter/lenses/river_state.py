"""River clustering models as plain data, and back, without running code from the data.

:func:`export_model` walks a fitted river model (river 0.26.1) into a tree of
plain values that :mod:`segmenter.codec` can store; :func:`import_model`
rebuilds the model from such a tree. The walk knows a fixed set of classes
(:data:`CLASSES`: the five clusterers, their micro-cluster classes, river's
running mean and variance) and containers (dict, list, tuple, deque,
``defaultdict`` with a known factory, ``random.Random``); anything else is
refused on export and cannot be named on import. Rebuilding creates instances
of those classes only and sets only the attributes a freshly constructed
instance has (or the class's ``__slots__``), each to plain data or another
rebuilt instance of a compatible type. Objects referenced twice (river's
``STREAMKMeans.centers`` *is* its inner ``KMeans.centers``) are written once and
referenced by number, so the rebuilt model keeps the same aliasing and
continues exactly as the original.

Node shapes (every container is an object with a ``"$"`` key)::

    {"$": "d", "id": n, "items": [[key, value], ...]}        dict
    {"$": "dd", "id": n, "factory": F, "items": [...]}       defaultdict (F: "float", "int", "list", or
                                                             {"gauss": <Random node>, "args": [mu, sigma]})
    {"$": "l", "id": n, "items": [...]}                      list
    {"$": "q", "id": n, "items": [...]}                      deque
    {"$": "t", "items": [...]}                               tuple
    {"$": "o", "id": n, "cls": name, "attrs": [[name, value], ...]}
    {"$": "rng", "id": n, "state": uint32[625], "gauss": float | None}
    {"$": "r", "id": n}                                      the object numbered n
    {"$": "f", "v": "nan" | "inf" | "-inf"}                  a non-finite float
"""

from __future__ import annotations

import functools
import math
import random
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import numpy as np
from river import cluster, stats
from river.cluster.clustream import CluStreamMicroCluster
from river.cluster.dbstream import DBSTREAMMicroCluster
from river.cluster.denstream import DenStreamMicroCluster

from segmenter.codec import expect_array, expect_dict, expect_float, expect_int, expect_list, expect_str
from segmenter.errors import StateError

__all__ = ["CLASSES", "export_model", "import_model"]

CLASSES: dict[str, type[Any]] = {
    "KMeans": cluster.KMeans,
    "STREAMKMeans": cluster.STREAMKMeans,
    "DenStream": cluster.DenStream,
    "DenStream.BufferItem": cluster.DenStream.BufferItem,
    "DenStreamMicroCluster": DenStreamMicroCluster,
    "DBSTREAM": cluster.DBSTREAM,
    "DBSTREAMMicroCluster": DBSTREAMMicroCluster,
    "CluStream": cluster.CluStream,
    "CluStreamMicroCluster": CluStreamMicroCluster,
    "Mean": stats.Mean,
    "Var": stats.Var,
}
"""The only classes a model tree can name."""
_NAMES = {cls: name for name, cls in CLASSES.items()}
_FACTORIES: dict[str, Callable[[], Any]] = {"float": float, "int": int, "list": list}
_FACTORY_NAMES = {f: name for name, f in _FACTORIES.items()}
_OPTIONAL = {"DenStream": frozenset({"_init_buffer"})}
"""Attributes river deletes once they are no longer needed (DenStream drops its buffer after initialising)."""
_MAX_DEPTH = 48
_RNG_WORDS = 625


@functools.cache  # a pure function of a name of the fixed allow-list (CLASSES): at most a dozen entries
def _schema(name: str) -> dict[str, type[Any] | None]:
    """Settable attributes of ``CLASSES[name]``: attribute -> type of a fresh instance's value (``None``: any)."""
    cls = CLASSES[name]
    slots = [s for k in cls.__mro__ for s in getattr(k, "__slots__", ())]
    if slots:
        return dict.fromkeys(slots, None)
    template = cls()
    return {k: (None if v is None else type(v)) for k, v in vars(template).items()}


def _compatible(value: Any, expected: type[Any] | None) -> bool:
    if expected is None or value is None or type(value) is expected:
        return True
    if expected in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, dict) and issubclass(expected, dict)


# ---------------------------------------------------------------------- export
_SCALARS = (type(None), bool, str, int, float, np.integer, np.floating, np.bool_)


def _export_scalar(obj: Any) -> Any:
    """A scalar (one of ``_SCALARS``) as JSON; numpy scalars become Python ones, non-finite floats are tagged."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    f = float(obj)
    return f if math.isfinite(f) else {"$": "f", "v": "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")}


class _Exporter:
    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps exported objects alive so that id() stays unique
        # containers by exact type (a subclass is not one of them: it goes to _object, which refuses it)
        self._by_type: dict[type[Any], Callable[[Any, int, int], Any]] = {
            dict: self._dict,
            defaultdict: self._defaultdict,
            list: self._list,
            deque: self._deque,
            random.Random: self._rng,
        }

    def _new_id(self, obj: Any) -> int | None:
        ref = self.ids.get(id(obj))
        if ref is not None:
            return ref
        self.ids[id(obj)] = len(self.ids)
        self.keep.append(obj)
        return None

    def node(self, obj: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("river model nests too deeply")
        if isinstance(obj, _SCALARS):
            return _export_scalar(obj)
        if isinstance(obj, tuple):
            return {"$": "t", "items": [self.node(v, depth + 1) for v in obj]}
        ref = self._new_id(obj)
        if ref is not None:
            return {"$": "r", "id": ref}
        n = self.ids[id(obj)]
        export = self._by_type.get(type(obj), self._object)
        return export(obj, n, depth)

    def _dict(self, obj: dict[Any, Any], n: int, depth: int) -> Any:
        return {"$": "d", "id": n, "items": self._items(obj, depth)}

    def _defaultdict(self, obj: defaultdict[Any, Any], n: int, depth: int) -> Any:
        factory = self._factory(obj.default_factory, depth)
        return {"$": "dd", "id": n, "factory": factory, "items": self._items(obj, depth)}

    def _list(self, obj: list[Any], n: int, depth: int) -> Any:
        return {"$": "l", "id": n, "items": [self.node(v, depth + 1) for v in obj]}

    def _deque(self, obj: deque[Any], n: int, depth: int) -> Any:
        if obj.maxlen is not None:
            raise ValueError("bounded deques are not supported")
        return {"$": "q", "id": n, "items": [self.node(v, depth + 1) for v in obj]}

    def _rng(self, obj: random.Random, n: int, depth: int) -> Any:
        _, words, gauss = obj.getstate()
        return {"$": "rng", "id": n, "state": np.asarray(words, dtype=np.uint32), "gauss": gauss}

    def _object(self, obj: Any, n: int, depth: int) -> Any:
        name = _NAMES.get(type(obj))
        if name is None:
            raise TypeError(f"cannot export a {type(obj).__module__}.{type(obj).__qualname__} from a river model")
        schema = _schema(name)
        attrs = [[k, self.node(getattr(obj, k), depth + 1)] for k in schema if hasattr(obj, k)]
        return {"$": "o", "id": n, "cls": name, "attrs": attrs}

    def _items(self, obj: dict[Any, Any], depth: int) -> list[list[Any]]:
        return [[self.node(k, depth + 1), self.node(v, depth + 1)] for k, v in obj.items()]

    def _factory(self, factory: Any, depth: int) -> Any:
        if factory is None:
            return None
        name = _FACTORY_NAMES.get(factory)
        if name is not None:
            return name
        if (
            isinstance(factory, functools.partial)
            and getattr(factory.func, "__name__", "") == "gauss"
            and type(getattr(factory.func, "__self__", None)) is random.Random
            and not factory.keywords
        ):
            return {
                "gauss": self.node(getattr(factory.func, "__self__", None), depth + 1),
                "args": [self.node(a, depth + 1) for a in factory.args],
            }
        raise TypeError(f"cannot export a defaultdict with factory {factory!r}")


def export_model(model: Any) -> dict[str, Any]:
    """The fitted state of a river model of :data:`CLASSES` as a plain tree (see the module docstring).

    Raises
    ------
    TypeError, ValueError
        The model holds an object the exporter does not know (a river upgrade changed its internals).
    """
    out: dict[str, Any] = _Exporter().node(model)
    return out


# ---------------------------------------------------------------------- import
class _Importer:
    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self._by_kind: dict[str, Callable[[dict[str, Any], int], Any]] = {
            "f": self._nonfinite,
            "t": self._tuple,
            "r": self._reference,
            "d": self._dict,
            "dd": self._defaultdict,
            "l": self._sequence,
            "q": self._sequence,
            "rng": lambda node, depth: self._rng(node),
            "o": self._object,
        }

    def _register(self, node: dict[str, Any], obj: Any) -> Any:
        n = expect_int(node.get("id"), "river model node id", 0)
        if n != len(self.objects):
            raise StateError(f"river model: node id {n} out of order (expected {len(self.objects)})")
        self.objects[n] = obj
        return obj

    def node(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise StateError("river model nests too deeply")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        node = expect_dict(value, "river model node")
        kind = node.get("$")
        build = self._by_kind.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise StateError(f"river model: unknown node kind {kind!r}")
        return build(node, depth)

    def _nonfinite(self, node: dict[str, Any], depth: int) -> float:
        v = node.get("v")
        if v not in ("nan", "inf", "-inf"):
            raise StateError(f"river model: bad non-finite float {v!r}")
        return float(v)

    def _tuple(self, node: dict[str, Any], depth: int) -> tuple[Any, ...]:
        return tuple(self.node(v, depth + 1) for v in expect_list(node.get("items"), "river tuple"))

    def _reference(self, node: dict[str, Any], depth: int) -> Any:
        n = expect_int(node.get("id"), "river model reference", 0)
        if n not in self.objects:
            raise StateError(f"river model: reference to unknown node {n}")
        return self.objects[n]

    def _dict(self, node: dict[str, Any], depth: int) -> dict[Any, Any]:
        return self._fill_dict(node, self._register(node, {}), depth)

    def _defaultdict(self, node: dict[str, Any], depth: int) -> defaultdict[Any, Any]:
        dd: defaultdict[Any, Any] = self._register(node, defaultdict())
        dd.default_factory = self._factory(node.get("factory"), depth)
        self._fill_dict(node, dd, depth)
        return dd

    def _sequence(self, node: dict[str, Any], depth: int) -> list[Any] | deque[Any]:
        seq: Any = self._register(node, [] if node.get("$") == "l" else deque())
        seq.extend(self.node(v, depth + 1) for v in expect_list(node.get("items"), "river list"))
        return seq  # type: ignore[no-any-return]

    def _fill_dict(self, node: dict[str, Any], out: dict[Any, Any], depth: int) -> dict[Any, Any]:
        for pair in expect_list(node.get("items"), "river dict"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise StateError("river model: a dict entry must be a [key, value] pair")
            key = self.node(pair[0], depth + 1)
            if not (key is None or isinstance(key, int | float | str | tuple)):
                raise StateError(f"river model: dict key of type {type(key).__name__}")
            out[key] = self.node(pair[1], depth + 1)
        return out

    def _factory(self, spec: Any, depth: int) -> Callable[[], Any] | None:
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec not in _FACTORIES:
                raise StateError(f"river model: unknown defaultdict factory {spec!r}")
            return _FACTORIES[spec]
        spec = expect_dict(spec, "river defaultdict factory")
        rng = self.node(spec.get("gauss"), depth + 1)
        if type(rng) is not random.Random:
            raise StateError("river model: a gauss factory needs a random generator")
        args = expect_list(spec.get("args"), "gauss args")
        for a in args:
            expect_float(a, "gauss factory argument")
        if len(args) != 2:
            raise StateError("river model: a gauss factory takes (mu, sigma)")
        return functools.partial(rng.gauss, *args)

    def _rng(self, node: dict[str, Any]) -> random.Random:
        rng = random.Random()
        self._register(node, rng)
        words = expect_array(node.get("state"), "random generator state", np.uint32, (_RNG_WORDS,))
        gauss = node.get("gauss")
        if gauss is not None:
            gauss = expect_float(gauss, "random generator gauss_next")
        if int(words[-1]) > _RNG_WORDS - 1:
            raise StateError("random generator state: position out of range")
        rng.setstate((3, tuple(int(w) for w in words), gauss))
        return rng

    def _object(self, node: dict[str, Any], depth: int) -> Any:
        name = expect_str(node.get("cls"), "river class")
        cls = CLASSES.get(name)
        if cls is None:
            raise StateError(f"river model: class {name!r} is not allowed (allowed: {', '.join(CLASSES)})")
        schema = _schema(name)
        obj = object.__new__(cls)
        self._register(node, obj)
        seen = set()
        for pair in expect_list(node.get("attrs"), f"{name} attributes"):
            if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
                raise StateError(f"river model: a {name} attribute must be a [name, value] pair")
            attr = pair[0]
            if attr not in schema:
                raise StateError(f"river model: {name} has no attribute {attr!r}")
            value = self.node(pair[1], depth + 1)
            if not _compatible(value, schema[attr]):
                raise StateError(f"river model: {name}.{attr} holds a {type(value).__name__}")
            setattr(obj, attr, value)
            seen.add(attr)
        missing = set(schema) - seen - _OPTIONAL.get(name, frozenset())
        if missing and not cls.__dict__.get("__slots__"):
            raise StateError(f"river model: {name} lacks attributes {sorted(missing)}")
        return obj


def import_model(tree: Any, expected: type[Any]) -> Any:
    """Rebuild a model of class ``expected`` from :func:`export_model` output.

    Raises
    ------
    StateError
        The tree is malformed, names a class outside :data:`CLASSES`, sets an
        attribute the class does not have (or to a value of another type), or
        holds a model of another class.
    """
    try:
        model = _Importer().node(tree)
    except (TypeError, ValueError, OverflowError) as exc:
        raise StateError(f"river model cannot be rebuilt: {exc}") from None
    if type(model) is not expected:
        raise StateError(f"model state holds a {type(model).__name__}, expected {expected.__name__}")
    return model
