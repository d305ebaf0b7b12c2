"""``k=v`` arguments: JSON-parsed when valid JSON, else a string, and coerced per the
tool's ``inputSchema`` where that is unambiguous (a ``string`` property keeps ``007``
as text; a number/boolean/array/object property must parse)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

_PARSED = frozenset({"integer", "number", "boolean", "array", "object", "null"})


def _declared(schema: Mapping[str, Any] | None, name: str) -> set[str]:
    if not schema:
        return set()
    prop = (schema.get("properties") or {}).get(name)
    if not isinstance(prop, Mapping):
        return set()
    kind = prop.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def coerce(name: str, raw: str, schema: Mapping[str, Any] | None) -> Any:
    """One value.

    Raises:
        click.BadParameter: the schema wants a non-string type and ``raw`` is not JSON.
    """
    kinds = _declared(schema, name)
    if kinds == {"string"}:
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        if kinds and kinds <= _PARSED:
            raise click.BadParameter(
                f"{name}={raw!r}: the tool wants {'/'.join(sorted(kinds))}, which must be JSON"
            ) from None
        return raw
    return value


def parse_pairs(
    pairs: Sequence[str], schema: Mapping[str, Any] | None = None, *, strings: bool = False
) -> dict[str, Any]:
    """``k=v`` pairs into arguments (``strings``: keep every value as text, for prompts).

    Raises:
        click.BadParameter: a pair without ``=``.
    """
    arguments: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}")
        arguments[name] = raw if strings else coerce(name, raw, schema)
    return arguments


def parse_json_args(text: str) -> dict[str, Any]:
    """``--json ARGS``: one JSON object.

    Raises:
        click.BadParameter: not JSON, or not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--json")
    return value
