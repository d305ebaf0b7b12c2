"""Tool ``outputSchema`` validation: jsonschema-rs compiled once, through a shared cache.

The contract: full JSON Schema (2020-12 by default, the dialect named by ``$schema``
otherwise), errors that name the failing place as a JSON pointer, and never a rejection
of a valid value: a schema we cannot use is skipped (with a warning), not enforced.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import resilient_mcp
from resilient_mcp import _schema
from resilient_mcp._schema import MAX_DEPTH, Unvalidatable, compile_schema, validate
from resilient_mcp._schema_cache import SchemaCache, canonical_key

from .fake import FakeServer, json_response, result

DRAFT7 = "http://json-schema.org/draft-07/schema#"


def ok(value: Any, schema: Any) -> None:
    assert compile_schema(schema).unusable is None, compile_schema(schema).unusable
    assert validate(value, schema) == [], f"{value!r} should match {schema!r}"


def bad(value: Any, schema: Any) -> list[str]:
    errors = validate(value, schema)
    assert errors, f"{value!r} should not match {schema!r}"
    assert all(e.startswith(("/", "(root): ")) for e in errors)
    return errors


def skipped(schema: Any) -> str:
    reason = compile_schema(schema).unusable
    assert reason is not None
    return reason


class TestCore:
    """The keywords every schema uses, both ways, with JSON's own equality."""

    @pytest.mark.parametrize(
        ("kind", "good", "wrong"),
        [
            ("object", [{}, {"a": 1}], [[], "x", 1, None, True]),
            ("array", [[], [1, "a"]], [{}, "x", 1, None]),
            ("string", ["", "x"], [1, None, []]),
            ("boolean", [True, False], [0, 1, "true", None]),
            ("null", [None], [0, "", False, {}]),
            ("integer", [0, -3, 10**30, 1.0, -2.0], [1.5, "1", True, None]),
            ("number", [0, 1.5, -2, 10**30, 1e300], ["1", True, None]),
        ],
    )
    def test_types(self, kind: str, good: list[Any], wrong: list[Any]) -> None:
        for value in good:
            ok(value, {"type": kind})
        for value in wrong:
            assert bad(value, {"type": kind})[0].startswith("(root): ")

    def test_objects(self) -> None:
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name"],
            "additionalProperties": False,
        }
        ok({"name": "a", "age": 3}, schema)
        assert bad({"age": 3}, schema) == ['(root): "name" is a required property']
        assert bad({"name": "a", "age": "3"}, schema) == ['/age: "3" is not of type "integer"']
        assert len(bad({"name": "a", "x": 1}, schema)) == 1

    def test_arrays_and_bounds(self) -> None:
        schema = {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}, "maxItems": 3}
        ok(["a", 1, 2], schema)
        assert bad(["a", 1, "b"], schema) == ['/2: "b" is not of type "integer"']
        bad(["a", 1, 2, 3], schema)
        ok(2, {"minimum": 1, "exclusiveMaximum": 3, "multipleOf": 2})
        bad(3, {"exclusiveMaximum": 3})
        ok("😀😀😀", {"maxLength": 3})  # code points, not UTF-8 bytes
        bad("abcd", {"maxLength": 3})

    @pytest.mark.parametrize(
        ("value", "expected"), [(True, 1), (0, False), ([1, {"a": True}], [1, {"a": 1}])]
    )
    def test_booleans_never_equal_numbers(self, value: Any, expected: Any) -> None:
        bad(value, {"const": expected})
        bad(value, {"enum": [expected]})

    def test_combinators(self) -> None:
        ok(1.5, {"oneOf": [{"type": "integer"}, {"type": "number"}]})
        bad(1, {"oneOf": [{"type": "integer"}, {"type": "number"}]})
        ok("x", {"anyOf": [{"type": "string"}, {"type": "null"}]})
        bad(1, {"not": {"type": "integer"}})
        ok({"a": 1}, {"allOf": [{"required": ["a"]}, {"maxProperties": 1}]})

    @pytest.mark.parametrize("value", [None, 0, "x", [], {}])
    def test_boolean_schemas(self, value: Any) -> None:
        ok(value, True)
        assert validate(value, False) == [
            "(root): False schema does not allow " + json.dumps(value)
        ]


class Test202012:
    """Keywords the former hand-written validator skipped are now enforced."""

    def test_ref_to_defs_and_root(self) -> None:
        schema = {"$defs": {"pos": {"type": "integer", "minimum": 1}}, "$ref": "#/$defs/pos"}
        ok(3, schema)
        assert bad(0, schema) == ["(root): 0 is less than the minimum of 1"]
        tree = {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
            "additionalProperties": False,
        }
        ok({"children": [{"children": []}, {}]}, tree)
        bad({"children": [{"children": [{"x": 1}]}]}, tree)

    def test_dynamic_ref(self) -> None:
        schema = {
            "$id": "https://example.invalid/tree",
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {"kids": {"type": "array", "items": {"$dynamicRef": "#node"}}},
        }
        ok({"kids": [{"kids": []}]}, schema)
        bad({"kids": [1]}, schema)

    def test_unevaluated_properties_and_items(self) -> None:
        schema = {
            "allOf": [{"properties": {"a": {"type": "integer"}}}],
            "properties": {"b": {}},
            "unevaluatedProperties": False,
        }
        ok({"a": 1, "b": 2}, schema)
        assert bad({"a": 1, "c": 3}, schema)[0].startswith("(root): Unevaluated properties")
        ok([1], {"prefixItems": [{}], "unevaluatedItems": False})
        bad([1, 2], {"prefixItems": [{}], "unevaluatedItems": False})

    def test_dependent_required_and_schemas(self) -> None:
        ok({"a": 1, "b": 2}, {"dependentRequired": {"a": ["b"]}})
        ok({"b": 2}, {"dependentRequired": {"a": ["b"]}})
        bad({"a": 1}, {"dependentRequired": {"a": ["b"]}})
        bad({"a": 1}, {"dependentSchemas": {"a": {"required": ["b"]}}})

    def test_if_then_else_contains_property_names_unique(self) -> None:
        schema = {"if": {"type": "integer"}, "then": {"minimum": 0}, "else": {"type": "string"}}
        ok(1, schema)
        ok("x", schema)
        bad(-1, schema)
        bad(None, schema)
        ok([1, None], {"contains": {"type": "null"}})
        bad([1], {"contains": {"type": "null"}})
        bad({"ab": 1}, {"propertyNames": {"maxLength": 1}})
        bad([1, 1], {"uniqueItems": True})
        ok(
            {"x_a": 1},
            {"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False},
        )


class TestDialects:
    """``$schema`` picks the dialect; without it, 2020-12."""

    def test_draft7_tuple_items_and_definitions(self) -> None:
        schema = {
            "$schema": DRAFT7,
            "definitions": {"s": {"type": "string"}},
            "items": [{"$ref": "#/definitions/s"}, {"type": "integer"}],
            "additionalItems": False,
        }
        ok(["a", 1], schema)
        bad([1, 1], schema)
        bad(["a", 1, 2], schema)

    def test_draft7_dependencies_and_draft4_boolean_bounds(self) -> None:
        bad({"a": 1}, {"$schema": DRAFT7, "dependencies": {"a": ["b"]}})
        draft4 = "http://json-schema.org/draft-04/schema#"
        bad(1, {"$schema": draft4, "minimum": 1, "exclusiveMinimum": True})
        ok(2, {"$schema": draft4, "minimum": 1, "exclusiveMinimum": True})

    def test_unknown_dialect_is_skipped_not_guessed(self) -> None:
        assert "meta-schema" in skipped({"$schema": "http://json-schema.org/draft-03/schema#"})
        assert validate(1, {"$schema": "https://example.invalid/mine", "type": "string"}) == []


class TestFormats:
    """Asserted where servers' values pass an exact check; annotations otherwise."""

    @pytest.mark.parametrize(
        ("fmt", "good", "wrong"),
        [
            # RFC 3339, and the naive ISO 8601 pydantic writes for naive datetimes.
            (
                "date-time",
                [
                    "2026-12-03T14:00:00Z",
                    "2026-12-03t14:00:00z",
                    "2026-12-03T14:00:00",
                    "2026-12-03T14:00:00.5+01:00",
                ],
                ["yesterday", "2026-13-03T14:00:00Z"],
            ),
            ("time", ["14:00:00Z", "14:00:00", "14:00:00.25+02:00"], ["2pm", "25:00:00"]),
            ("date", ["2026-12-03"], ["2026-02-30", "03/12/2026"]),
            ("uuid", ["6f1c1b3e-8a7e-4c1e-9d8b-2f1f7f3b9a10"], ["not-a-uuid"]),
            ("ipv4", ["127.0.0.1"], ["256.0.0.1"]),
            ("ipv6", ["::1", "fe80::1"], ["::g"]),
        ],
    )
    def test_asserted_formats(self, fmt: str, good: list[str], wrong: list[str]) -> None:
        for value in good:
            ok(value, {"format": fmt})
        for value in wrong:
            assert bad(value, {"format": fmt})[0].startswith("(root): ")
        ok(5, {"format": fmt})  # formats only apply to strings

    @pytest.mark.parametrize("fmt", _schema.ANNOTATION_ONLY)
    def test_annotation_only_formats(self, fmt: str) -> None:
        ok("not really one of those \x00 ::", {"format": fmt})

    def test_unknown_format_is_an_annotation(self) -> None:
        ok("x", {"format": "x-vendor"})


class TestErrors:
    """JSON pointers, at most five errors, messages bounded."""

    def test_pointer_names_the_failing_place_with_escapes(self) -> None:
        schema = {"properties": {"a/b": {"properties": {"c~": {"items": {"type": "integer"}}}}}}
        assert validate({"a/b": {"c~": [0, 1, "x"]}}, schema) == [
            '/a~1b/c~0/2: "x" is not of type "integer"'
        ]

    def test_errors_are_capped_and_messages_bounded(self) -> None:
        assert len(validate(list(range(20)), {"items": {"type": "string"}})) == 5
        (error,) = validate({"big": "x" * 5000}, {"properties": {"big": {"maxLength": 1}}})
        assert error.startswith("/big: ")
        assert len(error) <= len("/big: ") + _schema.MAX_MESSAGE

    def test_recursive_schema_with_branching_is_explained_without_a_place(self) -> None:
        # Regression: iter_errors builds every anyOf branch's errors; two recursive
        # branches made it exponential (36 s at depth 15, 22 GB at 18). Run in a child
        # with 1 GB of address space, so a regression fails here instead of eating the
        # machine's memory.
        code = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from resilient_mcp._schema import validate
branch = {"type": "object", "properties": {"a": {"$ref": "#/$defs/t"}}}
schema = {"$defs": {"t": {"anyOf": [branch, branch]}}, "$ref": "#/$defs/t"}
value = {"a": 1}
for _ in range(40):
    value = {"a": value}
print(validate(value, schema))
"""
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=50
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "['(root): does not match the outputSchema']"

    def test_exponentially_large_schema_is_skipped(self) -> None:
        # 30 levels of a two-way anyOf over one shared $ref: 2**30 checks (56 s measured).
        defs: dict[str, Any] = {
            f"t{i}": {"anyOf": [{"$ref": f"#/$defs/t{i + 1}"}, {"$ref": f"#/$defs/t{i + 1}"}]}
            for i in range(30)
        }
        defs["t30"] = {"type": "string"}
        schema = {"$defs": defs, "$ref": "#/$defs/t0"}
        assert "inlined" in skipped(schema)
        assert validate(1, schema) == []


class TestMalformedSchemas:
    """A server's broken schema is skipped with a reason: never a crash or a rejection."""

    @pytest.mark.parametrize(
        "schema",
        [
            None,
            "string",
            [{"type": "string"}],
            {"type": 5},
            {"required": "a", "properties": ["a"]},
            {"$ref": "#/$defs/missing"},
            {"pattern": "("},
        ],
        ids=repr,
    )
    def test_skipped(self, schema: Any) -> None:
        assert skipped(schema)
        assert validate({"a": 1}, schema) == []

    def test_remote_ref_is_never_fetched(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = listener.getsockname()[1]
            schema = {"properties": {"a": {"$ref": f"http://127.0.0.1:{port}/s.json"}}}
            assert "not fetched" in skipped(schema)
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody connected


class TestDeepValues:
    def test_deep_value_within_the_parser_limit(self) -> None:
        value: Any = {}
        for _ in range(900):
            value = {"next": value}
        ok(value, {"type": "object", "properties": {"next": {"$ref": "#"}}})

    def test_deeper_than_the_guard_is_not_judged(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Only reachable if the interpreter's recursion limit was raised (json.loads
        # builds no deeper value otherwise); jsonschema-rs would overflow the stack.
        monkeypatch.setattr(sys, "getrecursionlimit", lambda: 10**6)
        value: Any = 1
        for _ in range(MAX_DEPTH + 5):
            value = [value]
        with pytest.raises(Unvalidatable):
            compile_schema({"items": True}).errors(value)
        assert validate(value, {"type": "string"}) == []

    @pytest.mark.parametrize("value", [float("nan"), {"a": [float("inf")]}])
    def test_nan_is_not_judged(self, value: Any) -> None:
        # Regression: jsonschema-rs reads NaN as null, so this was a false rejection.
        assert validate(value, {"type": ["number", "object"], "maximum": 1}) == []


class TestCache:
    """One compiled validator per schema, process-wide; bounded, least recently used out."""

    def test_equal_schemas_share_one_compiled_validator(self) -> None:
        cache: SchemaCache[_schema.CompiledSchema] = SchemaCache()
        one = compile_schema({"type": "object", "required": ["a"]}, cache)
        two = compile_schema(json.loads('{"required": ["a"], "type": "object"}'), cache)
        assert one is two
        assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
        assert compile_schema({"type": "object"}, cache) is not one

    def test_bounded_by_entries(self) -> None:
        cache: SchemaCache[_schema.CompiledSchema] = SchemaCache(max_entries=3)
        first = compile_schema({"const": 0}, cache)
        for i in range(1, 100):
            compile_schema({"const": i}, cache)
        assert len(cache) == 3
        assert compile_schema({"const": 0}, cache) is not first  # evicted, compiled anew
        assert compile_schema({"const": 99}, cache) is compile_schema({"const": 99}, cache)

    def test_bounded_by_bytes_and_recently_used_stays(self) -> None:
        schemas = [{"description": "x" * 100, "const": i} for i in range(10)]
        weight = canonical_key(schemas[0])[1]
        cache: SchemaCache[_schema.CompiledSchema] = SchemaCache(max_bytes=3 * weight + 10)
        kept = compile_schema(schemas[0], cache)
        for schema in schemas[1:]:
            assert compile_schema(schemas[0], cache) is kept  # used: stays in
            compile_schema(schema, cache)
        assert len(cache) <= 3
        assert cache.weight <= cache.max_bytes
        huge = {"description": "y" * (4 * weight)}
        compile_schema(huge, cache)
        assert len(cache) <= 3  # heavier than the budget: compiled, not kept


ADD_SCHEMA = {
    "type": "object",
    "properties": {"sum": {"type": "number"}, "at": {"type": "string", "format": "date-time"}},
    "required": ["sum"],
}


def schema_server(output_schema: Any, structured: Any) -> FakeServer:
    tool = {"name": "add", "inputSchema": {"type": "object"}, "outputSchema": output_schema}
    return FakeServer(
        routes={
            "tools/list": lambda m: json_response(result(m, {"tools": [tool]})),
            "tools/call": lambda m: json_response(
                result(m, {"content": [], "structuredContent": structured})
            ),
        }
    )


async def call_add(server: FakeServer) -> Any:
    async with (
        server.client() as http,
        resilient_mcp.connect(
            resilient_mcp.HTTPServer("http://127.0.0.1:1/mcp", http_client=http),
            era="legacy",
            logger=structlog.get_logger(),
        ) as client,
    ):
        await client.list_tools()
        outcome = await client.call_tool("add", {})
        return outcome, client._catalog._validators["add"]


@pytest.mark.anyio
class TestThroughTheClient:
    async def test_two_sessions_share_one_compiled_validator(self) -> None:
        # A schema no other test uses, so the shared process-wide cache starts without it.
        schema = {**ADD_SCHEMA, "title": f"add-{time.monotonic_ns()}"}
        hits = _schema.default_cache.hits
        _, first = await call_add(schema_server(schema, {"sum": 3}))
        _, second = await call_add(schema_server(json.loads(json.dumps(schema)), {"sum": 4}))
        assert first is second
        assert _schema.default_cache.hits == hits + 1

    async def test_breaking_result_names_the_place(self) -> None:
        server = schema_server(ADD_SCHEMA, {"sum": 3, "at": "teatime"})
        with pytest.raises(resilient_mcp.ToolOutputError) as raised:
            await call_add(server)
        assert (
            'breaks its outputSchema: /at: "teatime" is not a "date-time"' in raised.value.message
        )
        assert raised.value.result is not None

    async def test_malformed_schema_is_skipped_with_one_warning(self) -> None:
        server = schema_server({"type": "object", "required": "sum"}, {"sum": 3})
        with capture_logs() as events:
            outcome, compiled = await call_add(server)
        assert outcome.structuredContent == {"sum": 3}
        assert compiled.unusable is not None
        warned = [e for e in events if e["event"] == "tool.output_schema_skipped"]
        assert len(warned) == 1
        assert warned[0]["tool"] == "add"
