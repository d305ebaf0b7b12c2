"""A small JSON Schema validator for tool ``outputSchema``\\ s.

MCP tools declare output schemas in JSON Schema (2020-12 by default). We check
``structuredContent`` against them without a heavyweight dependency. Covered: ``type``
(with integer/number distinction), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties``, ``items``/``prefixItems``, ``anyOf``/``oneOf``/``allOf``/``not``,
length/size/range bounds, and local ``$ref`` (``#/$defs/...``, ``#/definitions/...``).
Keywords it does not know are ignored (never a false rejection), so it can only miss
errors, never invent them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

__all__ = ["validate"]

_MAX_ERRORS = 5
_MAX_DEPTH = 64
# Schema/value pairs visited per validation. Recursive ``$ref``\ s under ``anyOf``/``oneOf``
# can otherwise make the work exponential in the depth of the value.
_MAX_STEPS = 100_000


class _GiveUp(Exception):
    """Too deep or too much work: stop, keeping only the errors already certain."""


class _Walk:
    """The state of one :func:`validate` call: the root schema and the work done so far."""

    __slots__ = ("root", "steps")

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.steps = 0


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float)
    return True  # an unknown type name: do not reject


def validate(value: Any, schema: Any) -> list[str]:
    """Return the ways ``value`` breaks ``schema`` (empty list: it conforms)."""
    errors: list[str] = []
    walk = _Walk(schema if isinstance(schema, Mapping) else {})
    # A check cut short could make ``not``/``oneOf`` report errors that are not real, so
    # we stop instead; everything already in ``errors`` was decided by complete checks.
    with suppress(_GiveUp):
        _check(value, schema, walk, "$", errors, 0)
    return errors[:_MAX_ERRORS]


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: like ``==``, but ``true``/``false`` never equal ``1``/``0``."""
    if a != b:
        return False
    stack = [(a, b)]
    while stack:  # iterative: ``==`` already recursed, and values may be deep
        x, y = stack.pop()
        if isinstance(x, bool) != isinstance(y, bool):
            return False
        if isinstance(x, dict) and isinstance(y, dict):
            stack.extend((x[key], y[key]) for key in x)
        elif isinstance(x, list) and isinstance(y, list):
            stack.extend(zip(x, y, strict=True))
    return True


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None  # remote references are not followed
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _check(value: Any, schema: Any, walk: _Walk, path: str, errors: list[str], depth: int) -> None:
    if len(errors) >= _MAX_ERRORS:
        return
    walk.steps += 1
    if depth > _MAX_DEPTH or walk.steps > _MAX_STEPS:
        raise _GiveUp
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, Mapping):
        return
    if isinstance(schema.get("$ref"), str):
        target = _resolve(schema["$ref"], walk.root)
        if target is not None:
            _check(value, target, walk, path, errors, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, str) and not _type_ok(value, kind):
        errors.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    if isinstance(kind, list) and not any(_type_ok(value, k) for k in kind if isinstance(k, str)):
        errors.append(f"{path}: expected one of {kind}, got {type(value).__name__}")
        return
    if (
        "enum" in schema
        and isinstance(schema["enum"], list)
        and not any(_json_equal(value, option) for option in schema["enum"])
    ):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: expected {schema['const']!r}")
    for key in ("allOf", "anyOf", "oneOf"):
        options = schema.get(key)
        if not isinstance(options, list):
            continue
        results = []
        for option in options:
            sub: list[str] = []
            _check(value, option, walk, path, sub, depth + 1)
            results.append(sub)
        passed = sum(1 for r in results if not r)
        if key == "allOf":
            for sub in results:
                errors.extend(sub)
        elif key == "anyOf" and passed == 0:
            errors.append(f"{path}: matches none of anyOf")
        elif key == "oneOf" and passed != 1:
            errors.append(f"{path}: matches {passed} of oneOf, expected exactly 1")
    if "not" in schema:
        sub = []
        _check(value, schema["not"], walk, path, sub, depth + 1)
        if not sub:
            errors.append(f"{path}: must not match 'not' schema")
    if isinstance(value, dict):
        _check_object(value, schema, walk, path, errors, depth)
    elif isinstance(value, list):
        _check_array(value, schema, walk, path, errors, depth)
    elif isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            bound = schema.get(key)
            if not isinstance(bound, int | float) or isinstance(bound, bool):
                continue
            ok = {
                "minimum": value >= bound,
                "maximum": value <= bound,
                "exclusiveMinimum": value > bound,
                "exclusiveMaximum": value < bound,
            }[key]
            if not ok:
                errors.append(f"{path}: {value} violates {key} {bound}")


def _check_object(
    value: dict[str, Any],
    schema: Mapping[str, Any],
    walk: _Walk,
    path: str,
    errors: list[str],
    depth: int,
) -> None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            if isinstance(name, str) and name not in value:
                errors.append(f"{path}: missing required property {name!r}")
    additional = schema.get("additionalProperties", True)
    if "patternProperties" in schema:
        # Not evaluated here, so we cannot tell which properties are "additional".
        additional = True
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], walk, f"{path}.{name}", errors, depth + 1)
        elif additional is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(additional, Mapping):
            _check(item, additional, walk, f"{path}.{name}", errors, depth + 1)


def _check_array(
    value: list[Any],
    schema: Mapping[str, Any],
    walk: _Walk,
    path: str,
    errors: list[str],
    depth: int,
) -> None:
    if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems")
    start = 0
    if isinstance(prefix, list):
        for index, (item, sub) in enumerate(zip(value, prefix, strict=False)):
            _check(item, sub, walk, f"{path}[{index}]", errors, depth + 1)
        start = len(prefix)
    items = schema.get("items")
    if isinstance(items, Mapping | bool):
        for index in range(start, len(value)):
            _check(value[index], items, walk, f"{path}[{index}]", errors, depth + 1)
