"""The structure of the mlcycle package, enforced rather than hoped for.

- the layering: every import-linter contract of pyproject.toml (``make lint`` runs the same);
- no import cycle among the package's modules, a function-level import included;
- no module over 400 lines;
- ``dict[str, Any]`` only at true JSON edges, at most 80 of them, never for a stored record
  or a topic payload.

The generated gRPC stubs (``mlcycle.protos``) are left out of the last three. Each failure
names every offender, so the message is the to-do list.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlcycle

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
PACKAGE = Path(mlcycle.__file__).parent
GENERATED = "mlcycle.protos"
MAX_LINES = 400
MAX_UNTYPED_DICTS = 80
UNTYPED_DICT = re.compile(r"dict\[str,\s*Any\]")

CONTRACTS = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_the_import_contract_is_kept(contract: str) -> None:
    # Imported here: without the dev extra, these tests fail and the rest of the suite runs.
    from importlinter import api  # noqa: F401  (configures import-linter)
    from importlinter.application import output, use_cases

    with output.console.capture() as captured:
        kept = use_cases.lint_imports(
            config_filename=str(PYPROJECT),
            limit_to_contracts=(contract,),
            cache_dir=None,
            no_logo=True,
        )
    if not kept:
        pytest.fail(f"import-linter contract {contract!r}:\n{captured.get()}", pytrace=False)


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package but the generated stubs: its name and its file."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != GENERATED and not name.startswith(GENERATED + "."):
            yield name, path


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    import grimp  # import-linter's graph builder; imported here for the same reason

    graph = grimp.build_graph("mlcycle", cache_dir=None)
    names = {name for name, _ in _modules()}
    edges: dict[str, set[str]] = defaultdict(set)
    for importer in names:
        for imported in graph.find_modules_directly_imported_by(importer) & names:
            # A module importing its own package (the package's __init__) is not counted.
            if not importer.startswith(imported + "."):
                edges[importer].add(imported)
    report = []
    for cycle in _cycles(edges):
        lines = [f"import cycle among {', '.join(cycle)}:"]
        for importer in cycle:
            for imported in sorted(edges[importer] & set(cycle)):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    lines.append(f"  {importer}:{detail['line_number']} imports {imported}")
        report.append("\n".join(lines))
    if report:
        pytest.fail("\n".join(report), pytrace=False)


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: path.read_text("utf-8").count("\n") for name, path in _modules()}
    over = sorted(((n, name) for name, n in sizes.items() if n > MAX_LINES), reverse=True)
    if over:
        listed = "\n".join(f"  {name}: {n} lines" for n, name in over)
        pytest.fail(f"{len(over)} modules over {MAX_LINES} lines:\n{listed}", pytrace=False)


def test_untyped_dicts_only_at_json_edges() -> None:
    counts = {
        name: n for name, path in _modules() if (n := len(UNTYPED_DICT.findall(path.read_text())))
    }
    total = sum(counts.values())
    if total > MAX_UNTYPED_DICTS:
        by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        listed = "\n".join(f"  {name}: {n}" for name, n in by_count)
        pytest.fail(
            f"'dict[str, Any]' appears {total} times, at most {MAX_UNTYPED_DICTS} allowed (only at"
            f" true JSON edges, never for a stored record or a topic payload):\n{listed}",
            pytrace=False,
        )
