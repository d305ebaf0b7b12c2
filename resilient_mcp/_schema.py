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
from typing import Any

__all__ = ["validate"]

_MAX_ERRORS = 5
_MAX_DEPTH = 64


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
    root = schema if isinstance(schema, Mapping) else {}
    _check(value, schema, root, "$", errors, 0)
    return errors[:_MAX_ERRORS]


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


def _check(
    value: Any, schema: Any, root: Mapping[str, Any], path: str, errors: list[str], depth: int
) -> None:
    if len(errors) >= _MAX_ERRORS or depth > _MAX_DEPTH:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, Mapping):
        return
    if isinstance(schema.get("$ref"), str):
        target = _resolve(schema["$ref"], root)
        if target is not None:
            _check(value, target, root, path, errors, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, str) and not _type_ok(value, kind):
        errors.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    if isinstance(kind, list) and not any(_type_ok(value, k) for k in kind if isinstance(k, str)):
        errors.append(f"{path}: expected one of {kind}, got {type(value).__name__}")
        return
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    for key in ("allOf", "anyOf", "oneOf"):
        options = schema.get(key)
        if not isinstance(options, list):
            continue
        results = []
        for option in options:
            sub: list[str] = []
            _check(value, option, root, path, sub, depth + 1)
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
        _check(value, schema["not"], root, path, sub, depth + 1)
        if not sub:
            errors.append(f"{path}: must not match 'not' schema")
    if isinstance(value, dict):
        _check_object(value, schema, root, path, errors, depth)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, errors, depth)
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
    root: Mapping[str, Any],
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
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{path}.{name}", errors, depth + 1)
        elif additional is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(additional, Mapping):
            _check(item, additional, root, f"{path}.{name}", errors, depth + 1)


def _check_array(
    value: list[Any],
    schema: Mapping[str, Any],
    root: Mapping[str, Any],
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
            _check(item, sub, root, f"{path}[{index}]", errors, depth + 1)
        start = len(prefix)
    items = schema.get("items")
    if isinstance(items, Mapping | bool):
        for index in range(start, len(value)):
            _check(value[index], items, root, f"{path}[{index}]", errors, depth + 1)
