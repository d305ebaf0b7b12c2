"""Tool ``outputSchema`` validation: each schema compiled once, by ``jsonschema-rs``.

Why ``jsonschema-rs``: measured side by side (``benchmarks/bench_schema.py``, figures
in docs/benchmarks.md), it validated a realistic large result 75x faster than our
former hand-written validator and 240x faster than ``jsonschema``, at a marginal import
cost of a few milliseconds; and it implements all of 2020-12 (``$ref``/``$defs``,
``$dynamicRef``, ``unevaluated*``, ``dependent*``, ``if``/``then``), drafts 4, 6, 7 and
2019-09 too, chosen by the schema's ``$schema`` (default 2020-12, the dialect MCP names).

The rules, each chosen so that a valid result is never rejected:

- **A schema we cannot use is skipped, not enforced.** A schema that is not valid
  JSON Schema, names an unknown dialect, has a ``$ref`` that does not resolve, or
  refers to a remote document compiles to a :class:`CompiledSchema` whose
  :attr:`~CompiledSchema.unusable` says why; its tool's results are not checked (the
  catalog logs a warning once per listed tool). Remote documents are never fetched: the
  resolver refuses every URI that the schema does not embed itself.
- **Formats**: asserted where the check is exact and what servers really send passes it
  (``date``, ``uuid``, ``ipv4``, ``ipv6``, ``json-pointer``, ``relative-json-pointer``;
  ``date-time`` and ``time`` as RFC 3339 *or* ISO 8601 without an offset, which is what
  pydantic writes for naive datetimes). Every other format is an annotation, as the
  spec's default is (``email``, ``uri`` and the like have checks that disagree between
  implementations on values servers send).
- **Errors** name the failing place as a JSON pointer (``/items/3/name``; the root is
  ``(root)``), at most five, each message at most 300 characters.
- **Explanations are bounded.** The verdict is ``is_valid`` (fast, short-circuits); the
  explanation (``iter_errors``) builds every ``anyOf``/``oneOf`` branch's errors, which
  under a recursive ``$ref`` grows exponentially (measured: 36 s at depth 15 for two
  recursive branches). So it runs only for schemas without a cycle of ``$ref``; for a
  recursive schema a rejection says ``(root): does not match the outputSchema``. A
  schema that, every ``$ref`` inlined once, has more than :data:`MAX_UNFOLDED` nodes is
  not used at all (shared ``$ref`` values make even the verdict exponential there).
- jsonschema-rs recurses natively: a value nested deeper than :data:`MAX_DEPTH` is not
  checked (:class:`Unvalidatable`). Values reach us from ``json.loads``, which with the
  default recursion limit (1,000) cannot build one, so the walk that looks only runs if
  the interpreter's limit was raised above it.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

import jsonschema_rs

from ._schema_cache import SchemaCache

__all__ = ["CompiledSchema", "Unvalidatable", "compile_schema", "default_cache", "validate"]

MAX_ERRORS: Final = 5
MAX_MESSAGE: Final = 300
# Measured: jsonschema-rs handled 15,000 levels on an 8 MB thread stack and crashed
# the process at 20,000; a tenth of that leaves room for deeper schemas per level.
MAX_DEPTH: Final = 1_000
# Schema nodes, every $ref inlined, up to which iter_errors is safe to run.
MAX_UNFOLDED: Final = 20_000


class Unvalidatable(Exception):
    """This value cannot be checked (too deep, or not JSON); the result is not judged."""


def _refuse_remote(uri: str) -> Any:
    # Never fetch: a server's schema must not make the client open connections.
    raise LookupError(f"remote reference {uri!r} is not fetched")


_RFC3339_DATE_TIME = jsonschema_rs.validator_for({"format": "date-time"}, validate_formats=True)
_RFC3339_TIME = jsonschema_rs.validator_for({"format": "time"}, validate_formats=True)


def _date_time(value: str) -> bool:
    if _RFC3339_DATE_TIME.is_valid(value):
        return True
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _time(value: str) -> bool:
    if _RFC3339_TIME.is_valid(value):
        return True
    try:
        _dt.time.fromisoformat(value)
    except ValueError:
        return False
    return True


def _annotation(value: str) -> bool:
    return True


ANNOTATION_ONLY: Final = (
    "duration",
    "email",
    "hostname",
    "idn-email",
    "idn-hostname",
    "iri",
    "iri-reference",
    "regex",
    "uri",
    "uri-reference",
    "uri-template",
)
_FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    "date-time": _date_time,
    "time": _time,
    **dict.fromkeys(ANNOTATION_ONLY, _annotation),
}


def _pointer(path: list[str | int]) -> str:
    if not path:
        return "(root)"
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:  # iterative: the point is not to recurse
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
    return False


def _resolve_local(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:] if ref not in ("#", "#/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _shape(root: Any) -> tuple[int, bool]:
    """The schema's size with every ``$ref`` inlined once (a ``$ref`` back into itself
    counts 1), capped at :data:`MAX_UNFOLDED` + 1, and whether it has such a cycle (or
    a reference only known at run time)."""
    budget = MAX_UNFOLDED + 1
    sizes: dict[str, int] = {}  # ref → unfolded size, once known
    open_refs: set[str] = set()
    cyclic = False

    def size(node: Any, depth: int) -> int:
        nonlocal cyclic
        if depth > 200:
            return budget
        total = 1
        children: Any = ()
        if isinstance(node, Mapping):
            for key, child in node.items():
                if key == "$ref" and isinstance(child, str):
                    total += ref_size(child, depth)
                elif key in ("$dynamicRef", "$recursiveRef"):
                    cyclic = True  # resolved at run time: assume it recurses
                elif key not in ("$defs", "definitions", "enum", "const", "examples", "default"):
                    total += size(child, depth + 1)
                if total >= budget:
                    return budget
        elif isinstance(node, list):
            children = node
        for child in children:
            total += size(child, depth + 1)
            if total >= budget:
                return budget
        return total

    def ref_size(ref: str, depth: int) -> int:
        nonlocal cyclic
        if ref in sizes:
            return sizes[ref]
        if ref in open_refs:
            cyclic = True
            return 1
        target = _resolve_local(ref, root)
        if target is None:  # anchored or embedded-$id: unknown, assume it recurses
            cyclic = True
            return 1
        open_refs.add(ref)
        sizes[ref] = found = size(target, depth + 1)
        open_refs.discard(ref)
        return found

    return size(root, 0), cyclic


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


class CompiledSchema:
    """One ``outputSchema``, compiled once; immutable, so sessions share it."""

    __slots__ = ("_explainable", "_validator", "unusable")

    def __init__(
        self,
        validator: jsonschema_rs.Validator | None,
        unusable: str | None,
        *,
        explainable: bool = True,
    ) -> None:
        self._validator = validator
        self._explainable = explainable
        self.unusable = unusable
        """Why this schema is not enforced (None: it is)."""

    def errors(self, value: Any) -> list[str]:
        """The ways ``value`` breaks the schema, ``"<pointer>: <message>"`` each, at most
        :data:`MAX_ERRORS` (empty: it conforms, or the schema is :attr:`unusable`).

        Raises:
            Unvalidatable: ``value`` is nested deeper than :data:`MAX_DEPTH` or is not
                JSON; nothing was decided.
        """
        validator = self._validator
        if validator is None:
            return []
        if sys.getrecursionlimit() > MAX_DEPTH and _depth_exceeds(value, MAX_DEPTH):
            raise Unvalidatable(f"nested deeper than {MAX_DEPTH} levels")
        try:
            if validator.is_valid(value):
                return []
            if _has_non_finite(value):
                # json.loads lets NaN/Infinity through; jsonschema-rs reads them as null,
                # so a rejection here could be false. Not JSON: not judged.
                raise Unvalidatable("holds NaN or Infinity, which JSON has not")
            if not self._explainable:
                return ["(root): does not match the outputSchema"]
            found: list[str] = []
            for error in validator.iter_errors(value):
                message = error.message
                if len(message) > MAX_MESSAGE:
                    message = message[: MAX_MESSAGE - 3] + "..."
                found.append(f"{_pointer(error.instance_path)}: {message}")
                if len(found) == MAX_ERRORS:
                    break
        except (ValueError, TypeError, OverflowError) as exc:
            # Not JSON (NaN, a Python object): judging it would be a guess.
            raise Unvalidatable(f"not checkable as JSON: {type(exc).__name__}") from None
        return found


def _compile(schema: Any) -> CompiledSchema:
    if not isinstance(schema, Mapping | bool):
        return CompiledSchema(
            None, f"a schema is an object or a boolean, not {type(schema).__name__}"
        )
    try:
        validator = jsonschema_rs.validator_for(
            dict(schema) if isinstance(schema, Mapping) else schema,
            validate_formats=True,
            formats=_FORMATS,
            retriever=_refuse_remote,
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        reason = str(exc).split("\n", 1)[0]
        return CompiledSchema(None, reason[:MAX_MESSAGE])
    unfolded, cyclic = _shape(schema)
    if unfolded > MAX_UNFOLDED:
        # Shared $refs can make a small schema an exponentially large tree, and checking
        # a value against it as slow (measured: 56 s for 30 levels of two-way anyOf).
        return CompiledSchema(
            None, f"more than {MAX_UNFOLDED} nodes with every $ref inlined: not checked"
        )
    return CompiledSchema(validator, None, explainable=not cyclic)


default_cache: SchemaCache[CompiledSchema] = SchemaCache()
"""The process-wide cache every catalog compiles through."""


def compile_schema(schema: Any, cache: SchemaCache[CompiledSchema] | None = None) -> CompiledSchema:
    """``schema`` compiled, from ``cache`` (default: the process-wide one) if it holds it.

    Never raises for a bad schema: that comes back :attr:`~CompiledSchema.unusable`.
    """
    try:
        return (default_cache if cache is None else cache).get_or_compile(schema, _compile)
    except (TypeError, ValueError) as exc:  # not JSON at all: nothing to key it by
        return CompiledSchema(None, f"not JSON: {type(exc).__name__}")


def validate(value: Any, schema: Any) -> list[str]:
    """The ways ``value`` breaks ``schema`` (empty: it conforms, or it cannot be judged)."""
    try:
        return compile_schema(schema).errors(value)
    except Unvalidatable:
        return []
