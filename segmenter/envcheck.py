"""Settings from flags and ``SEGMENTER_*`` variables: refuse unknown variables, describe invalid values.

An unknown variable is refused (a typo must not be ignored), and an invalid
value is reported with its flag and variable, a secret's value never shown.

pydantic-settings ignores environment variables it does not know, so
``SEGMENTER_SECURITY_PROTOCL=SASL_SSL`` would leave the client in plaintext
without a word. The edges call :func:`unknown_variables` with the environment
and the names their settings read (:func:`env_names`); the core never reads the
environment itself.

Examples
--------
>>> from segmenter.connection import ConnectionSettings
>>> known = env_names(ConnectionSettings, "SEGMENTER_")
>>> unknown_variables({"SEGMENTER_SECURITY_PROTOCL": "SASL_SSL", "HOME": "/root"}, known, "SEGMENTER_")
['unknown environment variable SEGMENTER_SECURITY_PROTOCL (did you mean SEGMENTER_SECURITY_PROTOCOL?)']
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping, Sequence

from pydantic import BaseModel, SecretStr, ValidationError

# Read by scripts/kafka-local (the local broker), not settings of either command; allowed here so one shell
# environment can serve the launcher, the consumer and the producer.
LAUNCHER_VARIABLES = frozenset(
    {
        "SEGMENTER_KAFKA_VERSION",
        "SEGMENTER_KAFKA_CACHE",
        "SEGMENTER_KAFKA_START_TIMEOUT",
        "SEGMENTER_KAFKA_HEAP",
        "SEGMENTER_KAFKA_PORT",
    }
)


def env_names(model: type[BaseModel], prefix: str, delimiter: str = "__") -> set[str]:
    """Every environment variable pydantic-settings reads for ``model``: each field, and each nested field.

    A nested model's field is both a variable of its own (JSON) and, joined by ``delimiter``, each of its fields.
    """
    names: set[str] = set()
    for name, field in model.model_fields.items():
        var = (prefix + name).upper()
        names.add(var)
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names.update(env_names(nested, var + delimiter, delimiter))
    return names


def unknown_variables(environ: Mapping[str, str], known: Collection[str], prefix: str) -> list[str]:
    """One message per variable in ``environ`` that starts with ``prefix`` but is not ``known``, sorted.

    Each message names the variable and, when one is close (:func:`difflib.get_close_matches`), the nearest
    known name. Variable names are compared case-insensitively, as pydantic-settings reads them.
    """
    upper = {k.upper() for k in known}
    cut = len(prefix)
    suffixes = sorted(k[cut:] for k in upper if k.startswith(prefix.upper()))  # the shared prefix says nothing
    messages = []
    for name in sorted(environ):
        if not name.upper().startswith(prefix.upper()) or name.upper() in upper:
            continue
        close = difflib.get_close_matches(name.upper()[cut:], suffixes, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix.upper()}{close[0]}?)" if close else ""
        messages.append(f"unknown environment variable {name}{hint}")
    return messages


def known_names(models: Iterable[type[BaseModel]], prefix: str) -> set[str]:
    """The variables any of ``models`` reads plus :data:`LAUNCHER_VARIABLES`."""
    names = set(LAUNCHER_VARIABLES)
    for model in models:
        names |= env_names(model, prefix)
    return names


def _describe(loc: Sequence[int | str], prefix: str) -> str:
    dotted = ".".join(str(p) for p in loc)
    flag = "--" + ".".join(str(p).replace("_", "-") for p in loc)
    env = prefix + "__".join(str(p).upper() for p in loc)
    return f"{dotted} (flag {flag}, env {env})"


def _is_secret(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    field = model.model_fields.get(str(loc[0])) if loc else None
    return field is not None and field.annotation in (SecretStr, SecretStr | None)


def describe_errors(exc: ValidationError, model: type[BaseModel], prefix: str) -> str:
    """One line naming each invalid field of ``model``, its flag and its variable; a secret's input is ``***``."""
    problems = []
    for err in exc.errors(include_url=False):
        shown = "***" if _is_secret(model, err["loc"]) else repr(err.get("input"))
        problems.append(f"invalid setting {_describe(err['loc'], prefix)}: {err['msg']} (got {shown})")
    return "; ".join(problems)
