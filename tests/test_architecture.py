"""The shape of the package: layers that stay small, import each other one way, and keep
MCP out of the transports.

These are the structural promises of docs/architecture.md, checked on the source so that
a change that breaks them fails here rather than in a review.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resilient_mcp"
MAX_LINES = 500
MAX_SESSION_LINES = 400
# Every MCP method and notification name the client knows of: none of them belongs in a
# transport, which moves messages without knowing what they mean.
MCP_NAME = re.compile(
    r"""["'](initialize|ping|notifications/[\w/]+|tools/\w+|resources/[\w/]+|prompts/\w+"""
    r"""|server/discover|subscriptions/listen|logging/setLevel|completion/complete"""
    r"""|sampling/createMessage|elicitation/create|roots/list)["']"""
)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports when it runs (``TYPE_CHECKING`` blocks aside)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    imported: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                target = ".".join([*prefix, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            candidates = [f"{target}.{alias.name}" for alias in node.names]
            # `from .x import y` imports x (y is a name in it, or a submodule of it).
            candidates = [c for c in candidates if c in known] or [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        imported |= {c for c in candidates if c in known and c != name}
    return imported


def test_no_import_cycle() -> None:
    known = modules()
    graph = {name: runtime_imports(name, path, set(known)) for name, path in known.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            # A package's own __init__ re-exporting its modules is not a cycle with them.
            if name.startswith(target + "."):
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    limit = MAX_SESSION_LINES if name == "resilient_mcp._session" else MAX_LINES
    assert lines <= limit, f"{name} has {lines} lines: it holds two jobs"


def test_transports_know_no_mcp_method() -> None:
    named = {
        f"{path.name}:{number}: {line.strip()}"
        for path in (PACKAGE / "_transports").glob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MCP_NAME.search(line) and not line.lstrip().startswith("#")
    }
    assert named == set()


def test_transports_import_nothing_above_them() -> None:
    """Transports may use the shared leaves (errors, classification, config, logging,
    targets); never the session, the eras or the client."""
    above = {"_session", "_calls", "_client", "_api", "_eras", "_rpc", "_gate", "_negotiate"}
    known = modules()
    offenders = {
        f"{name} imports {target}"
        for name, path in known.items()
        if name.startswith("resilient_mcp._transports")
        for target in runtime_imports(name, path, set(known))
        if target.split(".")[1] in above
    }
    assert offenders == set()
