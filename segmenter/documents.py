"""Reading the user's TOML and YAML files (config, rules) with errors that name the file.

A document is bounded before anything looks at its values: at most
:data:`MAX_DOCUMENT_BYTES`, tables and lists nested at most :data:`MAX_DEPTH`
levels, and no YAML aliases (``*name``: an alias bomb of a few hundred bytes
expands to billions of values). Every problem is a
:class:`~segmenter.errors.ConfigError` naming the file.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.toml"
>>> _ = path.write_text('seed = 3')
>>> read_document(path, "config file")
{'seed': 3}
>>> read_document(path.with_suffix(".ini"), "config file")
Traceback (most recent call last):
...
segmenter.errors.ConfigError: ...x.ini: cannot read the config file: ...
>>> _ = path.with_suffix(".yaml").write_text("a: &x [1]\\nb: *x\\n")
>>> read_document(path.with_suffix(".yaml"), "config file")
Traceback (most recent call last):
...
segmenter.errors.ConfigError: ...x.yaml: not valid YAML: YAML aliases are not allowed ...
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from segmenter.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_BYTES", "Location", "find_too_deep", "read_document"]

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest accepted config or rules file."""

MAX_DEPTH = 32
"""Deepest accepted nesting of tables and lists (the top-level table is level 1)."""

Location = tuple[int | str, ...]
"""Where a value sits in a document: keys and list indexes from the top."""


class _NoAliases(yaml.SafeLoader):
    """Refuses YAML aliases and stops nesting past what :func:`find_too_deep` then measures exactly."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = getattr(event, "start_mark", None)
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed (*name); write the value out in full", mark
            )
        if self._depth > 2 * MAX_DEPTH:  # the composer recurses: stop long before Python's recursion limit
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _bounded(loader: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    """``loader`` with :class:`_NoAliases`' checks in front."""
    return type(f"Bounded{loader.__name__}", (_NoAliases, loader), {})


def find_too_deep(data: Any, max_depth: int = MAX_DEPTH) -> Location | None:
    """Where ``data`` first nests dicts and lists deeper than ``max_depth`` levels, or ``None``.

    Iterative, so any depth is measured without recursion.

    Examples
    --------
    >>> find_too_deep({"a": [1, {"b": []}]}, max_depth=4), find_too_deep({"a": [1, {"b": []}]}, max_depth=3)
    (None, ('a', 1, 'b'))
    """
    stack: list[tuple[Location, Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict | list):
            if len(loc) >= max_depth:
                return loc
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend(((*loc, key), item) for key, item in reversed(list(items)))
    return None


def _dotted(loc: Location) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _one_line(exc: Exception) -> str:
    """The parser's complaint on one line (PyYAML's own text quotes the offending lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem or exc.context}{where}"
    return " ".join(str(exc).split())


def _read_bounded(path: Path, what: str) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{path}: the {what} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB; split or shorten it")
    try:
        return raw.decode("utf-8-sig")  # a leading byte order mark (Windows editors write one) is not TOML
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: not UTF-8 at byte {exc.start}") from None


def read_document(
    path: Path,
    what: str,
    yaml_loader: type[yaml.SafeLoader] = yaml.SafeLoader,
    locate: Callable[[Location, Any], str] | None = None,
) -> Any:
    """Parse a ``.toml``, ``.yaml`` or ``.yml`` file.

    Parameters
    ----------
    path
        The file.
    what
        What the file is ("config file", "rules file"), for the error messages.
    yaml_loader
        A :class:`yaml.SafeLoader` (sub)class for YAML files (aliases are refused whatever it is).
    locate
        Describes a location for the too-deep error (e.g. ``rule 'x', field 'payload.a'``);
        default ``field 'a.b[0]'``.

    Raises
    ------
    ConfigError
        The file cannot be read, is too large, is not valid TOML/YAML, uses a YAML
        alias, nests too deeply, or has another suffix.
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        if not path.is_file():
            _read_bounded(path, what)  # says why it cannot be read
        raise ConfigError(f"{path}: unknown {what} format {suffix!r}; use .toml, .yaml or .yml")
    text = _read_bounded(path, what)
    kind = "TOML" if suffix == ".toml" else "YAML"
    try:
        data = tomllib.loads(text) if kind == "TOML" else yaml.load(text, Loader=_bounded(yaml_loader))
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: TOMLDecodeError, and e.g. an integer of 5000 digits
        raise ConfigError(f"{path}: not valid {kind}: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the {what} is nested deeper than {MAX_DEPTH} levels; flatten it") from None
    loc = find_too_deep(data)
    if loc is not None:
        where = locate(loc, data) if locate is not None else f"field '{_dotted(loc)}'"
        raise ConfigError(f"{path}: {where}: nested deeper than {MAX_DEPTH} levels; flatten it")
    return data
