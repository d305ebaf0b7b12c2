"""JSON-RPC 2.0 for the test server: message builders and checks, errors, list cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final, TypeGuard

from resilient_mcp.testing._catalog import JSON

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
RESOURCE_NOT_FOUND: Final = -32002
"""MCP's "resource not found" of the handshake era (2026-07-28 uses -32602)."""


class RpcError(Exception):
    """An in-band JSON-RPC error raised by a method handler; the front end answers it."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def dumps(message: JSON) -> bytes:
    """Compact JSON; it never contains a raw newline, so it fits on one SSE data line."""
    return json.dumps(message, separators=(",", ":")).encode()


def result(request_id: str | int, result: JSON) -> JSON:
    """A success response."""
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error(request_id: Any, code: int, message: str, data: Any = None) -> JSON:
    """An error response (`data` left out when None)."""
    error: JSON = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def notification(method: str, params: JSON | None = None) -> JSON:
    """A notification (`params` left out when None)."""
    message: JSON = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def is_id(value: Any) -> TypeGuard[str | int]:
    """Whether `value` can be a request id (or a progress token): a string or an int."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def classify(message: Any) -> str | None:
    """'request', 'notification' or 'response'; None if not a JSON-RPC 2.0 message."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    if "method" in message:
        if not isinstance(message["method"], str):
            return None
        if "id" not in message:
            return "notification"
        return "request" if is_id(message["id"]) else None
    if ("result" in message) != ("error" in message):
        return "response" if "id" in message else None
    return None


def is_request(message: Any) -> bool:
    """Whether `message` is one request whose params, if any, are an object."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    if not is_id(message.get("id")):
        return False
    if not isinstance(message.get("method"), str):
        return False
    params = message.get("params")
    return params is None or isinstance(params, dict)


def string_param(params: JSON, key: str) -> str:
    """`params[key]`, which must be a string (else -32602)."""
    value = params.get(key)
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, f"Invalid params: '{key}' must be a string")
    return value


def encode_cursor(kind: str, offset: int) -> str:
    """The opaque cursor of the page of list `kind` that starts at `offset`."""
    raw = json.dumps({"list": kind, "offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(kind: str, cursor: Any, length: int) -> int:
    """The offset a cursor of list `kind` names; RpcError(-32602) for any other cursor."""
    invalid = RpcError(INVALID_PARAMS, "Invalid cursor")
    if not isinstance(cursor, str):
        raise invalid
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    if not isinstance(decoded, dict) or decoded.get("list") != kind:
        raise invalid
    offset = decoded.get("offset")
    # Only offsets this server could have issued are valid: strictly inside the list.
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 < offset < length:
        raise invalid
    return offset


def page(
    kind: str, items: list[JSON], params: JSON, page_size: int | None
) -> tuple[list[JSON], JSON]:
    """The page of `items` that `params.cursor` asks for, and its `nextCursor` (if any)."""
    cursor = params.get("cursor")
    start = 0 if cursor is None else decode_cursor(kind, cursor, len(items))
    if page_size is None:
        return items[start:], {}
    end = start + page_size
    extra = {"nextCursor": encode_cursor(kind, end)} if end < len(items) else {}
    return items[start:end], extra
