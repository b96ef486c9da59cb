"""The dependency direction of docs/architecture.md, checked on the source: a pure core, a thin Kafka edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[Path, set[str]]:
    out: dict[Path, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[path.relative_to(ROOT)] = names
    return out


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("segmenter", ("consumer", "producer", "kafka")),
        ("producer", ("consumer",)),
    ],
)
def test_packages_do_not_import_what_they_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        str(path): sorted(m for m in modules if m.split(".")[0] in forbidden)
        for path, modules in imported_modules(package).items()
    }
    assert {p: m for p, m in offenders.items() if m} == {}


@pytest.mark.parametrize(
    ("package", "edge"), [("consumer", "consumer/kafka_io.py"), ("producer", "producer/kafka_sink.py")]
)
def test_only_one_module_per_edge_package_imports_the_kafka_client(package: str, edge: str) -> None:
    importers = [
        str(path)
        for path, modules in imported_modules(package).items()
        if any(m.split(".")[0] == "kafka" for m in modules)
    ]
    assert importers == [edge]


CODE_BEARING = ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "jsonpickle")


@pytest.mark.parametrize("package", ["segmenter", "consumer", "producer"])
def test_no_product_module_imports_a_code_bearing_format(package: str) -> None:
    """Data that crosses a process boundary is never unpickled: no product module imports pickle and kin."""
    offenders = {
        str(path): sorted(m for m in modules if m.split(".")[0] in CODE_BEARING)
        for path, modules in imported_modules(package).items()
    }
    assert {p: m for p, m in offenders.items() if m} == {}
