"""Output: rich tables for people, JSON with stable keys for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from rich.console import Console
from rich.table import Table

from resilient_mcp import MCPError

from ._exit import error_class, exit_code

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def dump(model: pydantic.BaseModel) -> dict[str, Any]:
    """A model as the JSON the server sent (wire names, no unset members)."""
    result: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result


def emit_json(payload: Mapping[str, Any]) -> None:
    """One JSON document on stdout, keys in a stable order."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table (or a line saying it is empty)."""
    if not rows:
        out.print(f"[dim]no {title.lower()}[/dim]")
        return
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    out.print(grid)


def first_line(text: str | None, limit: int = 80) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_payload(error: MCPError) -> dict[str, Any]:
    """What ``--json`` prints for a failure: class, message, exit code, execution."""
    return {
        "ok": False,
        "error": {
            "class": error_class(error),
            "message": error.message,
            "method": error.method,
            "execution": error.execution.value,
            "exit_code": int(exit_code(error)),
        },
    }


def report_error(error: MCPError, *, as_json: bool) -> None:
    if as_json:
        emit_json(error_payload(error))
    else:
        err.print(
            f"[bold red]{error_class(error)}[/bold red]: {error} "
            f"[dim](execution: {error.execution.value}; exit {int(exit_code(error))})[/dim]"
        )
