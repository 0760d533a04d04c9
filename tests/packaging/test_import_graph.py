"""The import graph of Bastion's own modules: no cycles, and the layering the packages
promise (``middleware`` never imports ``instrumentation``; the runtime never imports the
command line or the local BigQuery server)."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import bastion

PACKAGE = Path(bastion.__file__).parent


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    paths = (
        Path(folder, file)
        for folder, _, files in os.walk(PACKAGE, followlinks=True)  # the package's links
        for file in files
        if file.endswith(".py")
    )
    for path in sorted(paths):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def module_level_imports(name: str, path: Path) -> Iterator[str]:
    """Bastion modules ``name`` imports when it is imported: top-level statements, and
    the bodies of ``try``/``if`` blocks there (not functions, not ``TYPE_CHECKING``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def graph() -> dict[str, set[str]]:
    return {
        name: {target for target in module_level_imports(name, path) if target in MODULES} - {name}
        for name, path in MODULES.items()
    }


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
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
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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


def test_the_walk_sees_the_whole_package() -> None:
    assert {"bastion.middleware.protect", "bastion.instrumentation.telemetry"} <= set(MODULES)
    assert {"bastion.cli.observatory", "bastion.localbq.server"} <= set(MODULES)
    edges = graph()
    assert "bastion.middleware.settings" in edges["bastion.middleware.protect"]


def test_no_import_cycles() -> None:
    assert strongly_connected(graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]


def test_middleware_never_imports_instrumentation() -> None:
    """Any import, lazy ones inside functions included."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("bastion.middleware"):
            for node in ast.walk(ast.parse(path.read_text())):
                text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
                if "instrumentation" in text or "bastion.cli" in text or "localbq" in text:
                    offenders.append(f"{name}: {text}")
    assert offenders == []


def test_the_runtime_never_imports_the_cli_or_the_local_server() -> None:
    runtime = [
        n for n in MODULES if n.startswith(("bastion.middleware", "bastion.instrumentation"))
    ]
    edges = graph()
    reached = set(runtime)
    pending = list(runtime)
    while pending:
        for target in edges[pending.pop()]:
            if target not in reached:
                reached.add(target)
                pending.append(target)
    assert not {n for n in reached if n.startswith(("bastion.cli", "bastion.localbq"))}
