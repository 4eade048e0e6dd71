"""Dependencies point one way: names → pure transform and quality code → the lakehouse → Dagster
resources and assets → the definitions and the CLI.

The graph is read from the source (every import, including those inside functions, which hide
cycles from a plain `import`), so a back edge fails here before it fails at run time; what a
command really loads is measured in a subprocess, away from what this suite has imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from financial_assets.lazy_names import built_on_first_use
from financial_assets_tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "financial_assets"

# Lowest first. A module may import modules of its own layer and of the layers below, never above.
# A module belongs to the layer of the longest prefix that names it.
LAYERS = (
    # Names, settings, code digests and constants built on first use: the standard library only.
    ("", "settings", "lakehouse.catalog", "lakehouse.tables", "code_versions", "lazy_names"),
    # Pure code (no Dagster): the Spark transform and its audit, the source connections.
    ("transform", "quality", "sources", "sample_data"),
    # The lakehouse's state: Iceberg reads and writes, extraction into it, its readers.
    ("lakehouse", "extract", "query", "maintenance.lakehouse", "maintenance.compaction"),
    # Dagster: resources, assets, checks, sensors, jobs, and how the catalog classifies assets.
    ("resources", "analytics", "raw", "source_assets", "maintenance", "alerts", "automation", "ownership"),
    # Entry points.
    ("definitions", "cli", "operations"),
)
WITHOUT_DAGSTER = 3  # layers below this one never import Dagster (Glue and the CLI run them)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from package import module` imports that module.
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules)
    return {name for name in found if name in modules}


def _third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found - {"financial_assets", "__future__"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str) -> int | None:
    """The layer of the longest prefix that names ``module``; None when none does."""
    relative = module.removeprefix("financial_assets").lstrip(".")
    best, layer = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (relative == prefix or relative.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    return layer


def test_every_module_has_a_layer():
    assert [name for name in _modules() if _layer(name) is None] == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first repeated last), or None. Importing a module
    first runs its packages' ``__init__``: those count as imported too, unless they enclose the
    importer (Python runs a package's ``__init__`` before any of its modules)."""
    edges = {
        module: {
            parent for target in targets for parent in _with_parents(target)
            if parent not in _with_parents(module)
        }
        for module, targets in graph.items()
    }
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def test_no_module_imports_one_of_a_higher_layer():
    back_edges = sorted(
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    )

    assert back_edges == []


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_package_init():
    graph = {
        "financial_assets.a.engines": {"financial_assets.b.lakehouse"},
        "financial_assets.b": {"financial_assets.a.engines"},  # b/__init__.py, imported with b.lakehouse
        "financial_assets.b.lakehouse": set(),
    }

    assert _cycle(graph) == ["financial_assets.a.engines", "financial_assets.b", "financial_assets.a.engines"]


def test_code_below_the_resources_never_imports_dagster():
    modules = _modules()

    dagster_users = sorted(
        name for name, path in modules.items()
        if _layer(name) < WITHOUT_DAGSTER and any(m.startswith("dagster") for m in _third_party_imports(path))
    )

    assert dagster_users == []


def test_importing_the_names_and_settings_loads_only_the_standard_library():
    names = sorted(name for name in _modules() if _layer(name) == 0 and name != "financial_assets")
    program = (
        "import sys\nbefore = set(sys.modules)\n"
        f"for name in {names!r}: __import__(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )

    completed = _run(sys.executable, "-c", program)

    assert completed.returncode == 0, completed.stderr
    assert "financial_assets.lakehouse.tables" in names
    assert set(completed.stdout.split()) - set(sys.stdlib_module_names) == {"financial_assets"}


def _run(*command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


# `dagster definitions validate` of the workspace `dagster dev` loads, run so that it prints the
# modules it imported as it exits.
_VALIDATE = """
import atexit, runpy, sys
atexit.register(lambda: print("IMPORTED", *sorted(sys.modules), file=sys.stderr))
sys.argv = ["dagster", "definitions", "validate", "-w", "workspace.yaml"]
runpy.run_module("dagster", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def validation() -> subprocess.CompletedProcess:
    """One run of `dagster definitions validate` (seconds) for the tests below."""
    return _run(sys.executable, "-c", _VALIDATE)


def _imported(validation: subprocess.CompletedProcess, names: tuple[str, ...]) -> set[str]:
    """The modules of the top-level packages ``names`` that a successful validation imported."""
    assert validation.returncode == 0, validation.stdout + validation.stderr[-3000:]
    imported = set(validation.stderr.rsplit("IMPORTED", 1)[1].split())
    assert "financial_assets.definitions" in imported
    return {m for m in imported if m.split(".")[0] in names}


def test_dagster_validates_the_workspace(validation):
    assert validation.returncode == 0, validation.stdout + validation.stderr[-3000:]


def test_dagster_validates_the_definitions_without_loading_pyspark(validation):
    assert _imported(validation, ("pyspark", "py4j", "dagster_pyspark")) == set()


# Libraries only a run uses: the steps and resources import them when they run, so that loading
# the code location (the UI, the daemon, every run's process, `validate`) stays within issue 15's 5 s.
RUN_TIME_LIBRARIES = (
    "pyiceberg", "pyarrow", "numpy", "duckdb", "slack_sdk", "dagster_slack", "pymongo", "bson", "psycopg2",
    "boto3", "dagster_aws",
)


def test_dagster_validates_the_definitions_without_loading_what_only_a_run_uses(validation):
    assert _imported(validation, RUN_TIME_LIBRARIES) == set()


def _counted_build(builds: list) -> object:
    def build():
        builds.append(1)
        return {"SCHEMA": object()}

    return cache(build)


def test_a_constant_built_on_first_use_is_built_once_when_first_asked_for():
    builds = []
    lookup = built_on_first_use("some.module", _counted_build(builds))
    assert builds == []

    assert lookup("SCHEMA") is lookup("SCHEMA")
    assert builds == [1]


def test_other_names_and_the_import_systems_look_ups_build_nothing_and_are_missing():
    builds = []
    lookup = built_on_first_use("some.module", _counted_build(builds))

    with pytest.raises(AttributeError):
        lookup("__path__")  # what the import system asks every module
    assert builds == []
    with pytest.raises(AttributeError, match="some.module.*OTHER"):
        lookup("OTHER")
