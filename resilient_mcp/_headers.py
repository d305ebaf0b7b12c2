"""The modern era's routing headers (2026-07-28, Streamable HTTP).

Every request names its method (``Mcp-Method``) and, for ``tools/call``,
``prompts/get`` and ``resources/read``, its target (``Mcp-Name``), so that gateways can
route and authorize without parsing bodies. A tool may also ask for some of its
arguments to travel as headers: an ``inputSchema`` property annotated
``"x-mcp-header": "Region"`` is sent as ``Mcp-Param-Region: <value>``. The client MUST
send those, and MUST drop tools whose annotations are invalid (the spec: empty, not an
RFC 9110 token, duplicated case-insensitively, on a non-primitive property, or not
reachable through a chain of ``properties``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "NAME_PARAMS",
    "ParamHeader",
    "header_value",
    "param_header_specs",
    "param_headers",
    "routing_headers",
]

NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Method -> the params key mirrored in ``Mcp-Name``."""

ParamHeader = tuple[tuple[str, ...], str]
"""(path of property names into the arguments, header name suffix)."""

_SAFE = re.compile(r"[\x20-\x7E]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_B64 = re.compile(r"=\?base64\?.*\?=")
_PRIMITIVE = frozenset({"string", "integer", "boolean"})
_ANNOTATION = "x-mcp-header"


def header_value(value: str) -> str:
    """``value`` as it must travel in a header: verbatim when it is visible ASCII
    without edge whitespace, else ``=?base64?...?=`` (so the server recovers the bytes)."""
    if _SAFE.fullmatch(value) and value == value.strip() and not _B64.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="


def routing_headers(
    method: str, params: Mapping[str, Any] | None, param_specs: tuple[ParamHeader, ...] = ()
) -> dict[str, str]:
    """The ``Mcp-Method``/``Mcp-Name``/``Mcp-Param-*`` headers of one request."""
    headers = {"Mcp-Method": header_value(method)}
    if not isinstance(params, Mapping):
        return headers
    key = NAME_PARAMS.get(method)
    if key is not None and isinstance(params.get(key), str):
        headers["Mcp-Name"] = header_value(params[key])
    if param_specs:
        arguments = params.get("arguments")
        if isinstance(arguments, Mapping):
            headers.update(param_headers(param_specs, arguments))
    return headers


def param_headers(specs: tuple[ParamHeader, ...], arguments: Mapping[str, Any]) -> dict[str, str]:
    """``Mcp-Param-*`` headers for the annotated arguments present (absent/null: none)."""
    headers: dict[str, str] = {}
    for path, name in specs:
        value: Any = arguments
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            continue  # a float or structure: not a header value (the server validates)
        headers[f"Mcp-Param-{name}"] = header_value(text)
    return headers


def param_header_specs(schema: Any) -> tuple[ParamHeader, ...] | None:
    """The header annotations of a tool's ``inputSchema``; None if any is invalid."""
    specs: list[ParamHeader] = []
    seen: set[str] = set()
    found = _count_annotations(schema)
    if found == 0:
        return ()

    def walk(node: Any, path: tuple[str, ...]) -> bool:
        properties = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(properties, Mapping):
            return True
        for prop, sub in properties.items():
            if not isinstance(sub, Mapping):
                continue
            if _ANNOTATION in sub:
                name = sub[_ANNOTATION]
                if (
                    not isinstance(name, str)
                    or not _TOKEN.fullmatch(name)
                    or name.lower() in seen
                    or sub.get("type") not in _PRIMITIVE
                ):
                    return False
                seen.add(name.lower())
                specs.append(((*path, str(prop)), name))
            if not walk(sub, (*path, str(prop))):
                return False
        return True

    if not walk(schema, ()):
        return None
    # Annotations anywhere else (under anyOf, items, $defs...) are unreachable: invalid.
    return tuple(specs) if len(specs) == found else None


def _count_annotations(node: Any) -> int:
    if isinstance(node, Mapping):
        own = 1 if _ANNOTATION in node else 0
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            # Keys of `properties` are property names (a property may be *called*
            # "x-mcp-header"); only its values are schemas.
            own += sum(_count_annotations(v) for v in properties.values())
        return own + sum(_count_annotations(v) for k, v in node.items() if k != "properties")
    if isinstance(node, list):
        return sum(_count_annotations(v) for v in node)
    return 0
