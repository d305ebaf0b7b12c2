#!/usr/bin/env python
"""JSON Schema validators for tool ``outputSchema``: which one to compile, measured.

Side by side, in one run, on this machine:

- import cost: ``python -X importtime -c "import X"`` in a fresh interpreter, the
  cumulative microseconds of the top-level module (median of several runs);
- compile time per schema (build a validator object once);
- validation time per call, for a valid value, on a small schema (the ``add`` tool's
  ``{"sum": number}``) and a large realistic one (a list of 50 issues with ``$defs``,
  ``$ref``, formats, enums, ``additionalProperties: false``), plus an invalid value.

Contenders: our hand-written validator as it was before issue 13 (loaded from git
revision ``--old-rev``, default ``ebc2cdd``), our current ``resilient_mcp._schema``
(compile + validate), ``jsonschema-rs`` (Rust), ``jsonschema`` (pure Python, compiled
validator object), and ``fastjsonschema`` (code generation; drafts 04/06/07 only, so it
gets the large schema rewritten with ``definitions``). A contender that is not installed
shows ``n/a``. Ratios are against ``jsonschema-rs``.

    .venv/bin/python benchmarks/bench_schema.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Validate = Callable[[Any], bool]

SMALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sum": {"type": "number"}},
    "required": ["sum"],
}
SMALL_VALUE: dict[str, Any] = {"sum": 3}

LARGE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "user": {
            "type": "object",
            "properties": {
                "login": {"type": "string", "minLength": 1, "maxLength": 39},
                "id": {"type": "integer", "minimum": 1},
                "email": {"type": ["string", "null"], "format": "email"},
                "url": {"type": "string", "format": "uri"},
            },
            "required": ["login", "id"],
            "additionalProperties": False,
        },
        "label": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "color": {"type": "string", "pattern": "^[0-9a-f]{6}$"},
            },
            "required": ["name"],
        },
        "issue": {
            "type": "object",
            "properties": {
                "number": {"type": "integer", "minimum": 1},
                "title": {"type": "string", "maxLength": 256},
                "state": {"enum": ["open", "closed"]},
                "author": {"$ref": "#/$defs/user"},
                "assignees": {"type": "array", "items": {"$ref": "#/$defs/user"}},
                "labels": {"type": "array", "items": {"$ref": "#/$defs/label"}},
                "created_at": {"type": "string", "format": "date-time"},
                "comments": {"type": "integer", "minimum": 0},
                "body": {"type": ["string", "null"]},
            },
            "required": ["number", "title", "state", "author", "created_at"],
            "additionalProperties": False,
        },
    },
    "properties": {
        "total_count": {"type": "integer", "minimum": 0},
        "incomplete_results": {"type": "boolean"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/issue"}, "maxItems": 100},
    },
    "required": ["total_count", "items"],
    "additionalProperties": False,
}


def _user(i: int) -> dict[str, Any]:
    return {
        "login": f"user{i}",
        "id": i + 1,
        "email": f"user{i}@example.com" if i % 2 else None,
        "url": f"https://example.com/users/user{i}",
    }


LARGE_VALUE: dict[str, Any] = {
    "total_count": 50,
    "incomplete_results": False,
    "items": [
        {
            "number": i + 1,
            "title": f"Issue number {i} about something that broke",
            "state": "open" if i % 3 else "closed",
            "author": _user(i),
            "assignees": [_user(i + 1), _user(i + 2)],
            "labels": [{"name": "bug", "color": "d73a4a"}, {"name": "p2"}],
            "created_at": "2026-12-03T14:00:00Z",
            "comments": i,
            "body": "Steps to reproduce: ..." if i % 4 else None,
        }
        for i in range(50)
    ],
}
# The same value with one error deep inside: items[37].author.id must be >= 1.
LARGE_BAD: dict[str, Any] = json.loads(json.dumps(LARGE_VALUE))
LARGE_BAD["items"][37]["author"]["id"] = 0


def draft7(schema: Any) -> Any:
    """The large schema in draft-07 spelling (``definitions``), for fastjsonschema."""
    text = json.dumps(schema).replace("$defs", "definitions")
    out = json.loads(text)
    out["$schema"] = "http://json-schema.org/draft-07/schema#"
    return out


def load_old_validator(rev: str) -> ModuleType | None:
    """Our pre-issue-13 validator, from git, as a module of its own."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:resilient_mcp/_schema.py"],
            capture_output=True,
            check=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    try:
        spec = importlib.util.spec_from_file_location("old_schema", handle.name)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        os.unlink(handle.name)


def build_contenders(old_rev: str) -> dict[str, Callable[[Any], Validate] | None]:
    """Name → compile(schema) → is_valid(value); None if not installed."""
    out: dict[str, Callable[[Any], Validate] | None] = {}
    old = load_old_validator(old_rev)
    out[f"ours before ({old_rev})"] = (
        (lambda schema: lambda value: not old.validate(value, schema)) if old else None
    )
    from resilient_mcp import _schema

    def ours_now(schema: Any) -> Validate:
        compiled = _schema.compile_schema(schema)
        return lambda value: not compiled.errors(value)

    out["ours now (_schema)"] = ours_now if hasattr(_schema, "compile_schema") else None
    try:
        import jsonschema_rs
    except ImportError:
        out["jsonschema-rs"] = None
    else:
        out["jsonschema-rs"] = lambda schema: (
            jsonschema_rs.validator_for(schema, validate_formats=True, offline=True).is_valid
        )
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        out["jsonschema"] = None
    else:

        def jsonschema_compile(schema: Any) -> Validate:
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid  # type: ignore[no-any-return]

        out["jsonschema"] = jsonschema_compile
    try:
        import fastjsonschema  # type: ignore[import-not-found, unused-ignore]  # optional
    except ImportError:
        out["fastjsonschema (d7)"] = None
    else:

        def fast_compile(schema: Any) -> Validate:
            check = fastjsonschema.compile(draft7(schema))

            def is_valid(value: Any) -> bool:
                try:
                    check(value)
                except fastjsonschema.JsonSchemaException:
                    return False
                return True

            return is_valid

        out["fastjsonschema (d7)"] = fast_compile
    return out


# The old validator imports only stdlib modules every interpreter has loaded (no row);
# ours now is jsonschema-rs plus a small module, so its import row is jsonschema_rs's.
IMPORTS = {
    "ours now (_schema)": "jsonschema_rs",
    "jsonschema-rs": "jsonschema_rs",
    "jsonschema": "jsonschema",
    "fastjsonschema (d7)": "fastjsonschema",
}


# What resilient_mcp imports anyway: the marginal cost of a validator is over these.
PRELUDE = "import anyio, httpx, pydantic, structlog, tenacity; "


def import_cost_us(module: str, runs: int, prelude: str = "") -> float | None:
    """Median cumulative import time of ``module`` in a fresh interpreter (µs), after
    ``prelude`` ran (so modules it imported are not counted)."""
    samples = []
    for _ in range(runs):
        try:
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", f"{prelude}import {module}"],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
        except subprocess.SubprocessError:
            return None
        if done.returncode != 0:
            return None
        top = None
        for line in done.stderr.splitlines():
            parts = [part.strip() for part in line.split("|")]
            if len(parts) == 3 and parts[2] == module:
                top = float(parts[1])
        if top is None:
            return None
        samples.append(top)
    return statistics.median(samples)


def per_call_us(fn: Callable[[], object], budget_s: float) -> float:
    """Median over 5 batches of the time per call of ``fn`` (µs)."""
    fn()  # warm
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < budget_s / 10:
        fn()
        n += 1
    batch = max(1, n)
    medians = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        medians.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(medians)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short budgets (CI smoke)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--old-rev", default="ebc2cdd", help="git revision of the old validator")
    args = parser.parse_args()
    budget = 0.1 if args.quick else 0.6
    import_runs = 3 if args.quick else 7
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}")
    if load > (os.cpu_count() or 1) / 2:
        print("WARNING: the machine is busy; compare the ratios of this run, not absolutes")

    contenders = build_contenders(args.old_rev)
    rows: dict[str, dict[str, float | None]] = {}
    for name, compile_ in contenders.items():
        row: dict[str, float | None] = {}
        key = next((k for k in IMPORTS if name.startswith(k)), None)
        row["import_us"] = import_cost_us(IMPORTS[key], import_runs) if key else None
        row["import_marginal_us"] = (
            import_cost_us(IMPORTS[key], import_runs, PRELUDE) if key else None
        )
        if compile_ is None:
            rows[name] = {**row, "compile_small_us": None}
            continue
        for label, schema, good, wrong in (
            ("small", SMALL_SCHEMA, SMALL_VALUE, {"sum": "3"}),
            ("large", LARGE_SCHEMA, LARGE_VALUE, LARGE_BAD),
        ):
            build: Callable[[Any], Validate] = compile_
            row[f"compile_{label}_us"] = per_call_us(partial(build, schema), budget)
            check = build(schema)
            verdict_good, verdict_bad = check(good), check(wrong)
            if not verdict_good:
                print(f"NOTE: {name} rejects the valid {label} value")
            if verdict_bad:
                print(f"NOTE: {name} accepts the invalid {label} value")
            row[f"valid_{label}_us"] = per_call_us(partial(check, good), budget)
            row[f"invalid_{label}_us"] = per_call_us(partial(check, wrong), budget)
        rows[name] = row

    columns = [
        "import_us",
        "import_marginal_us",
        "compile_small_us",
        "compile_large_us",
        "valid_small_us",
        "valid_large_us",
        "invalid_large_us",
    ]
    print()
    print(f"{'contender':24}" + "".join(f"{c.removesuffix('_us')[:15]:>16}" for c in columns))
    for name, row in rows.items():
        cells = "".join(
            f"{row.get(c):>16.1f}" if row.get(c) is not None else f"{'n/a':>16}" for c in columns
        )
        print(f"{name:24}{cells}")
    print(
        "(µs; import = cumulative -X importtime of the module in a fresh interpreter;"
        " import_marginal = the same after importing anyio, httpx, pydantic, structlog,"
        " tenacity)"
    )
    ref = rows.get("jsonschema-rs", {})
    print("\nratios against jsonschema-rs (>1: slower than jsonschema-rs)")
    for name, row in rows.items():
        parts = []
        for c in columns:
            mine, theirs = row.get(c), ref.get(c)
            parts.append(f"{mine / theirs:>15.1f}x" if mine and theirs else f"{'n/a':>16}")
        print(f"{name:24}" + "".join(parts))
    if args.json:
        args.json.write_text(json.dumps({"load": load, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
