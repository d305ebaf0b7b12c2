"""What a modern (2026-07-28) request must carry, and the checks it has to pass.

Every modern request is self-contained: `params._meta` carries the protocol version and
the client's capabilities (the envelope), and on HTTP the `MCP-Protocol-Version`,
`Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers mirror the body. The checks, their
order and their messages are the reference server's (the `mcp` 2.3 Python SDK).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from starlette.datastructures import Headers

from resilient_mcp.testing._catalog import JSON
from resilient_mcp.testing._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    is_id,
)

MODERN_PROTOCOL_VERSION: Final = "2026-07-28"
HANDSHAKE_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Versions reachable through `initialize`; a dual-era server sends a POST whose
`MCP-Protocol-Version` header names anything else (or an unknown value) to the modern
era, as the mcp 2.3 session manager does."""

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY: Final = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL_KEY: Final = "io.modelcontextprotocol/logLevel"
SERVER_INFO_KEY: Final = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_KEY: Final = "io.modelcontextprotocol/subscriptionId"

HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

# The reference server's error-code → HTTP-status table; other codes go out with 200.
ERROR_STATUS: Final[dict[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

# Method → the params field mirrored into `Mcp-Name`.
NAME_BEARING: Final[dict[str, str]] = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
}
_ROUTING_HEADERS: Final = frozenset({"mcp-protocol-version", "mcp-method", "mcp-name"})

LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
"""The log levels, least severe first."""
_B64_SENTINEL: Final = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


@dataclass(frozen=True)
class Envelope:
    """The validated per-request `_meta` of a modern request."""

    version: str
    capabilities: JSON
    client_info: Any
    log_level: str | None
    progress_token: str | int | None


def status_of(message: JSON) -> int:
    """The HTTP status a JSON-RPC response goes out with."""
    error = message.get("error")
    return ERROR_STATUS.get(error["code"], 200) if isinstance(error, dict) else 200


def decode_header_value(value: str | None) -> str | None:
    """A header value with the `=?base64?…?=` sentinel decoded; None if malformed."""
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded).decode("ascii") != payload:
        return None  # not canonical base64
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_routing_duplicates(raw: Iterable[tuple[bytes, bytes]]) -> None:
    """A routing header sent twice is a -32020 (first- and last-copy readers disagree)."""
    seen: set[str] = set()
    for name_bytes, _ in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in _ROUTING_HEADERS:
            if name in seen:
                raise RpcError(HEADER_MISMATCH, f"{name} header appears more than once")
            seen.add(name)


def unsupported_version(requested: str, supported: tuple[str, ...]) -> RpcError | None:
    """The -32022 error for a version not in `supported`, or None."""
    if requested in supported:
        return None
    return RpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(supported), "requested": requested},
    )


def validate_envelope(
    message: JSON, headers: Headers | None, supported: tuple[str, ...]
) -> Envelope:
    """The reference server's validation ladder; raises the first rung that fails.

    1. `params._meta` carries protocolVersion and clientCapabilities (else -32602);
    2. on HTTP the routing headers match the body (else -32020);
    3. the version is a supported string (-32602 if not a string, else -32022).
    """
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        raise RpcError(
            INVALID_PARAMS,
            "params._meta must be an object carrying the required "
            f"{PROTOCOL_VERSION_KEY!r} and {CLIENT_CAPABILITIES_KEY!r} envelope keys",
        )
    missing = [key for key in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if key not in meta]
    if missing:
        raise RpcError(
            INVALID_PARAMS,
            f"params._meta is missing the required envelope key(s): {', '.join(missing)}",
        )
    assert isinstance(params, dict)  # _meta was found in it
    version = meta[PROTOCOL_VERSION_KEY]
    if headers is not None:
        _check_routing_headers(message["method"], params, version, headers)
    if not isinstance(version, str):
        raise RpcError(INVALID_PARAMS, "the protocol-version envelope value must be a string")
    rejection = unsupported_version(version, supported)
    if rejection is not None:
        raise rejection
    capabilities = meta[CLIENT_CAPABILITIES_KEY]
    if not isinstance(capabilities, dict):
        raise RpcError(INVALID_PARAMS, "Invalid request parameters", "")
    log_level = meta.get(LOG_LEVEL_KEY)
    if log_level is not None and log_level not in LEVELS:
        raise RpcError(INVALID_PARAMS, "Invalid request parameters", "")
    token = meta.get("progressToken")
    if not is_id(token):
        token = None
    return Envelope(version, capabilities, meta.get(CLIENT_INFO_KEY), log_level, token)


def _check_routing_headers(method: str, params: JSON, version: Any, headers: Headers) -> None:
    """Rung 2: `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` match the body."""
    header_version = headers.get("mcp-protocol-version")
    if header_version is None or header_version != version:
        raise RpcError(
            HEADER_MISMATCH,
            "mcp-protocol-version header does not match the request envelope's protocol version",
        )
    if headers.get("mcp-method") != method:
        raise RpcError(
            HEADER_MISMATCH, "mcp-method header does not match the request body's method"
        )
    name_key = NAME_BEARING.get(method)
    if name_key is not None:
        body_value = params.get(name_key)
        if body_value is not None and decode_header_value(headers.get("mcp-name")) != body_value:
            raise RpcError(
                HEADER_MISMATCH,
                f"mcp-name header does not match the request body's {name_key!r} parameter",
            )


def validate_param_headers(schema: JSON, arguments: JSON, headers: Headers) -> None:
    """Check `Mcp-Param-*` headers against the arguments (top-level `x-mcp-header`s)."""
    properties = schema.get("properties", {})
    for name, spec in properties.items():
        token = spec.get("x-mcp-header") if isinstance(spec, dict) else None
        if not isinstance(token, str):
            continue
        header = f"Mcp-Param-{token}"
        values = headers.getlist(header)
        raw = values[0] if values else None
        value = arguments.get(name)
        if len(values) > 1:
            raise RpcError(HEADER_MISMATCH, f"{header} header appears more than once")
        if value is None:
            if raw is not None:
                raise RpcError(
                    HEADER_MISMATCH,
                    f"{header} header is present but the request body's {name!r} argument "
                    "is absent",
                )
            continue
        if raw is None:
            raise RpcError(
                HEADER_MISMATCH,
                f"{header} header is missing but the request body's {name!r} argument is present",
            )
        decoded = decode_header_value(raw)
        if decoded is None:
            raise RpcError(
                HEADER_MISMATCH, f"{header} header carries a malformed base64 sentinel value"
            )
        rendered = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if decoded != rendered:
            raise RpcError(
                HEADER_MISMATCH,
                f"{header} header does not match the request body's {name!r} argument",
            )


def has_capability(capabilities: JSON, name: str) -> bool:
    """Whether the envelope's client capabilities include `name`."""
    if name == "elicitation":
        # A bare `elicitation: {}` means form support; url-only does not.
        elicitation = capabilities.get("elicitation")
        return isinstance(elicitation, dict) and ("form" in elicitation or "url" not in elicitation)
    return isinstance(capabilities.get(name), dict)


def missing_capability(name: str, tool: str) -> RpcError:
    """The -32021 error of a tool that needs client capability `name`."""
    required: JSON = {"elicitation": {"form": {}}} if name == "elicitation" else {name: {}}
    return RpcError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Client did not declare the {name} capability required by tool {tool!r}",
        {"requiredCapabilities": required},
    )


def is_modern_request(message: Any) -> bool:
    """Whether a JSON-RPC request carries the modern protocol-version `_meta` key."""
    if not isinstance(message, dict):
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta
