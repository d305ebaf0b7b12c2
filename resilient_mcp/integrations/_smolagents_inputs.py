"""smolagents ``inputs`` from an MCP tool's input schema, and tool names smolagents
accepts (for :mod:`resilient_mcp.integrations.smolagents`).

smolagents requires every input to have a ``type`` of its own vocabulary and a
``description``, treats every input that is not ``nullable`` as required, sends each
input's schema without the ``$defs`` it may point into, and refuses tool names that are
not Python identifiers. These functions make a server's schema and names fit, as
mcpadapt does, keeping everything else as the server gave it.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["accepts_null", "identifier", "inputs_of"]

# smolagents' AUTHORIZED_TYPES that a JSON Schema can name.
_JSON_TYPES = frozenset({"string", "boolean", "integer", "number", "array", "object", "null"})
_JSON_OF = {type(None): "null", bool: "boolean", int: "integer", float: "number"}
_JSON_OF.update({list: "array", dict: "object"})


def identifier(name: str) -> str:
    """``name`` made a Python identifier, as mcpadapt does (smolagents refuses others)."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    fixed = re.sub(r"[^\w]", "", name.replace("-", "_")) or "_"
    fixed = f"_{fixed}" if fixed[0].isdigit() else fixed
    return f"{fixed}_" if keyword.iskeyword(fixed) else fixed


def _resolve(node: Any, defs: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with local ``$ref``\\ s inlined: smolagents sends each input's schema on
    its own, without the ``$defs`` it points into. A recursive reference is dropped."""
    if isinstance(node, list):
        return [_resolve(item, defs, seen) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: _resolve(value, defs, seen) for key, value in node.items() if key != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name) if ref.startswith(("#/$defs/", "#/definitions/")) else None
        if isinstance(target, Mapping) and name not in seen:
            return {**_resolve(target, defs, seen | {name}), **out}
    return out


def _type_of(schema: Mapping[str, Any]) -> str | list[str]:
    """The smolagents ``type`` of a property schema: its JSON types, else ``"any"``."""
    declared = schema.get("type")
    if isinstance(declared, str) and declared in _JSON_TYPES:
        return declared
    if isinstance(declared, list) and declared and all(t in _JSON_TYPES for t in declared):
        return list(declared)
    branches = schema.get("anyOf") or schema.get("oneOf")
    kinds: list[str] = []
    for branch in branches if isinstance(branches, list) else ():
        kind = _type_of(branch) if isinstance(branch, Mapping) else "any"
        kinds += [one for one in ([kind] if isinstance(kind, str) else kind) if one not in kinds]
    if kinds and "any" not in kinds:
        return kinds[0] if len(kinds) == 1 else kinds
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    found = {_JSON_OF.get(type(value), "string") for value in values or ()}
    return found.pop() if isinstance(values, list) and len(found) == 1 else "any"


def inputs_of(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """smolagents ``inputs`` from an input schema: each property's schema as the server
    gave it, with the ``type`` and ``description`` smolagents requires, and ``nullable``
    for an optional one (smolagents requires every input that is not nullable)."""
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    resolved = _resolve(schema, defs)
    properties = resolved.get("properties")
    required = set(resolved.get("required") or ())
    inputs: dict[str, dict[str, Any]] = {}
    for key, prop in (properties if isinstance(properties, Mapping) else {}).items():
        entry = dict(prop) if isinstance(prop, Mapping) else {}
        entry["type"] = _type_of(entry)
        for branches in ("anyOf", "oneOf"):
            # smolagents reads each branch's `type` when it builds the model's schema.
            if isinstance(entry.get(branches), list):
                entry[branches] = [
                    {**b, "type": _type_of(b)} if isinstance(b, Mapping) else {"type": "any"}
                    for b in entry[branches]
                ]
        entry.setdefault("description", "")
        if key not in required:
            entry["nullable"] = True
        inputs[str(key)] = entry
    return inputs


def accepts_null(schema: Any) -> bool:
    kind = _type_of(schema) if isinstance(schema, Mapping) else "any"
    return kind in ("any", "null") or (isinstance(kind, list) and "null" in kind)
