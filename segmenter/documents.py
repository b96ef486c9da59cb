"""Reading the user's TOML and YAML files (config, rules) with errors that name the file.

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
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from segmenter.errors import ConfigError

__all__ = ["read_document"]


def read_document(path: Path, what: str, yaml_loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """Parse a ``.toml``, ``.yaml`` or ``.yml`` file.

    Parameters
    ----------
    path
        The file.
    what
        What the file is ("config file", "rules file"), for the error messages.
    yaml_loader
        A :class:`yaml.SafeLoader` (sub)class for YAML files.

    Raises
    ------
    ConfigError
        The file cannot be read, is not valid TOML/YAML, or has another suffix.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=yaml_loader)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    raise ConfigError(f"{path}: unknown {what} format {suffix!r}; use .toml, .yaml or .yml")
