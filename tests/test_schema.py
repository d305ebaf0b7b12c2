"""The small JSON Schema validator used for tool ``outputSchema``\\ s.

Its contract is one-sided: it may miss errors, but it must never reject a value a real
JSON Schema (2020-12) validator accepts. So every keyword is tested both ways, and every
keyword it does not implement is tested to be harmless.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest

from resilient_mcp._schema import validate


def ok(value: Any, schema: Any) -> None:
    assert validate(value, schema) == [], f"{value!r} should match {schema!r}"


def bad(value: Any, schema: Any) -> list[str]:
    errors = validate(value, schema)
    assert errors, f"{value!r} should not match {schema!r}"
    assert all(isinstance(error, str) and error.startswith("$") for error in errors)
    return errors


class TestType:
    """``type``: JSON types, with integer ⊂ number and booleans that are not numbers."""

    @pytest.mark.parametrize(
        ("kind", "good", "wrong"),
        [
            ("object", [{}, {"a": 1}], [[], "x", 1, None, True]),
            ("array", [[], [1, "a"]], [{}, "x", 1, None, (1,)]),
            ("string", ["", "x"], [1, None, [], b"x"]),
            ("boolean", [True, False], [0, 1, "true", None]),
            ("null", [None], [0, "", False, {}]),
            ("integer", [0, -3, 10**30, 1.0, -2.0], [1.5, "1", True, False, None]),
            ("number", [0, 1.5, -2, 10**30, 1e300], ["1", True, False, None]),
        ],
    )
    def test_single_type(self, kind: str, good: list[Any], wrong: list[Any]) -> None:
        for value in good:
            ok(value, {"type": kind})
        for value in wrong:
            bad(value, {"type": kind})

    def test_bool_is_neither_integer_nor_number(self) -> None:
        assert validate(True, {"type": "integer"}) == ["$: expected integer, got bool"]
        bad(False, {"type": "number"})

    def test_type_list(self) -> None:
        schema = {"type": ["string", "null"]}
        ok("x", schema)
        ok(None, schema)
        bad(1, schema)

    def test_unknown_type_name_is_not_a_rejection(self) -> None:
        ok(1, {"type": "decimal"})
        ok(1, {"type": ["decimal", "string"]})

    def test_type_mismatch_reports_path(self) -> None:
        schema = {"properties": {"a": {"items": {"type": "string"}}}}
        assert validate({"a": ["x", 2]}, schema) == ["$.a[1]: expected string, got int"]


class TestObjects:
    """``properties``, ``required`` and ``additionalProperties``."""

    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
    }

    def test_conforming_object(self) -> None:
        ok({"name": "a", "age": 3}, self.SCHEMA)
        ok({"name": "a"}, self.SCHEMA)

    def test_missing_required_property(self) -> None:
        assert validate({"age": 3}, self.SCHEMA) == ["$: missing required property 'name'"]

    def test_property_of_wrong_type(self) -> None:
        assert validate({"name": "a", "age": "3"}, self.SCHEMA) == [
            "$.age: expected integer, got str"
        ]

    def test_extra_properties_allowed_by_default(self) -> None:
        ok({"name": "a", "extra": [1]}, self.SCHEMA)

    def test_additional_properties_false(self) -> None:
        schema = {**self.SCHEMA, "additionalProperties": False}
        ok({"name": "a", "age": 1}, schema)
        assert validate({"name": "a", "x": 1}, schema) == ["$: unexpected property 'x'"]

    def test_additional_properties_schema(self) -> None:
        schema = {
            "properties": {"a": {"type": "string"}},
            "additionalProperties": {"type": "integer"},
        }
        ok({"a": "x", "b": 1, "c": 2}, schema)
        assert validate({"a": "x", "b": "y"}, schema) == ["$.b: expected integer, got str"]

    def test_additional_properties_true_or_empty_schema(self) -> None:
        ok({"z": 1}, {"additionalProperties": True})
        ok({"z": 1}, {"additionalProperties": {}})

    def test_pattern_properties_are_not_additional(self) -> None:
        # Regression: patternProperties is not evaluated, so properties it covers used
        # to count as "additional" and be rejected by additionalProperties: false.
        schema = {"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False}
        ok({"x_a": 1}, schema)

    def test_object_keywords_ignore_non_objects(self) -> None:
        ok("x", {"required": ["a"], "properties": {"a": {}}, "additionalProperties": False})

    def test_malformed_keywords_are_ignored(self) -> None:
        ok({"a": 1}, {"required": "a", "properties": ["a"], "additionalProperties": "no"})


class TestArrays:
    """``items``, ``prefixItems`` and the item-count bounds."""

    def test_items(self) -> None:
        schema = {"type": "array", "items": {"type": "integer"}}
        ok([], schema)
        ok([1, 2, 3], schema)
        assert validate([1, "2", 3], schema) == ["$[1]: expected integer, got str"]

    def test_prefix_items(self) -> None:
        schema = {"prefixItems": [{"type": "string"}, {"type": "integer"}]}
        ok(["a", 1], schema)
        ok(["a"], schema)  # shorter arrays are fine
        ok(["a", 1, None, {}], schema)  # so are longer ones without "items"
        assert validate([1, 1], schema) == ["$[0]: expected string, got int"]

    def test_items_after_prefix_items_applies_to_the_rest(self) -> None:
        schema = {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}
        ok(["a", 1, 2], schema)
        assert validate(["a", 1, "b"], schema) == ["$[2]: expected integer, got str"]

    def test_items_false_forbids_extra_items(self) -> None:
        schema = {"prefixItems": [{}, {}], "items": False}
        ok([1, 2], schema)
        assert validate([1, 2, 3], schema) == ["$[2]: no value is allowed here"]

    def test_draft7_tuple_items_are_not_misread(self) -> None:
        # Array-form "items" (draft 2019 and older) is not understood: never a rejection.
        ok(["a", 1], {"items": [{"type": "string"}, {"type": "integer"}]})
        ok([1, "a"], {"items": [{"type": "string"}, {"type": "integer"}]})

    def test_min_and_max_items(self) -> None:
        schema = {"minItems": 1, "maxItems": 2}
        ok([1], schema)
        ok([1, 2], schema)
        assert validate([], schema) == ["$: fewer than 1 items"]
        assert validate([1, 2, 3], schema) == ["$: more than 2 items"]


class TestEnumAndConst:
    """``enum``/``const`` compare as JSON does: ``true`` is not ``1``, ``1.0`` is ``1``."""

    def test_enum(self) -> None:
        schema = {"enum": ["red", "green", None, 3]}
        for value in ("red", None, 3, 3.0):
            ok(value, schema)
        assert validate("blue", schema) == ["$: 'blue' is not one of ['red', 'green', None, 3]"]

    def test_const(self) -> None:
        ok({"a": [1, 2]}, {"const": {"a": [1, 2]}})
        ok(1.0, {"const": 1})
        assert validate(2, {"const": 1}) == ["$: expected 1"]
        bad({"a": [1]}, {"const": {"a": [1, 2]}})
        bad([1, 2], {"const": [2, 1]})

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, 1),
            (1, True),
            (False, 0),
            (0.0, False),
            ([1, {"a": True}], [1, {"a": 1}]),
            ({"a": [0]}, {"a": [False]}),
        ],
    )
    def test_booleans_never_equal_numbers(self, value: Any, expected: Any) -> None:
        # Regression: Python's True == 1 made const/enum accept booleans for numbers.
        bad(value, {"const": expected})
        bad(value, {"enum": [expected]})

    def test_nested_equal_values_with_booleans_in_the_same_places(self) -> None:
        ok([1, {"a": True, "b": [False, 0]}], {"const": [1.0, {"b": [False, 0], "a": True}]})

    def test_deeply_nested_const_does_not_overflow_the_stack(self) -> None:
        value: Any = 1
        for _ in range(5_000):
            value = [value]
        ok(value, {"const": value})

    def test_non_list_enum_is_ignored(self) -> None:
        ok("x", {"enum": "abc"})


class TestCombinators:
    """``allOf``, ``anyOf``, ``oneOf`` and ``not``."""

    def test_all_of(self) -> None:
        schema = {"allOf": [{"type": "integer"}, {"minimum": 0}]}
        ok(3, schema)
        assert validate(-1, schema) == ["$: -1 violates minimum 0"]
        assert validate("x", schema) == ["$: expected integer, got str"]

    def test_any_of(self) -> None:
        schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
        ok("x", schema)
        ok(1, schema)
        assert validate(1.5, schema) == ["$: matches none of anyOf"]

    def test_one_of(self) -> None:
        schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
        ok(1.5, schema)  # number only
        assert validate(1, schema) == ["$: matches 2 of oneOf, expected exactly 1"]
        assert validate("x", schema) == ["$: matches 0 of oneOf, expected exactly 1"]

    def test_not(self) -> None:
        schema = {"not": {"type": "string"}}
        ok(1, schema)
        assert validate("x", schema) == ["$: must not match 'not' schema"]

    def test_combinators_with_boolean_schemas(self) -> None:
        ok(1, {"anyOf": [False, True]})
        bad(1, {"anyOf": [False, False]})
        ok(1, {"oneOf": [True, False]})
        bad(1, {"oneOf": [True, True]})
        ok(1, {"not": False})
        bad(1, {"not": True})
        bad(1, {"not": {}})

    def test_combinators_nest(self) -> None:
        schema = {"anyOf": [{"allOf": [{"type": "string"}, {"minLength": 2}]}, {"type": "null"}]}
        ok("ab", schema)
        ok(None, schema)
        bad("a", schema)

    def test_non_list_combinators_are_ignored(self) -> None:
        ok(1, {"anyOf": {"type": "string"}, "oneOf": "x", "allOf": None})


class TestBounds:
    """Numeric ranges and string lengths."""

    @pytest.mark.parametrize(
        ("keyword", "bound", "good", "wrong"),
        [
            ("minimum", 1, [1, 1.0, 2, 10**20], [0, 0.999]),
            ("maximum", 1, [1, 1.0, 0, -(10**20)], [2, 1.001]),
            ("exclusiveMinimum", 1, [1.001, 2], [1, 1.0, 0]),
            ("exclusiveMaximum", 1, [0.999, 0], [1, 1.0, 2]),
            ("minimum", 0.5, [0.5, 1], [0, 0.4]),
        ],
    )
    def test_numeric_bounds(
        self, keyword: str, bound: float, good: list[float], wrong: list[float]
    ) -> None:
        for value in good:
            ok(value, {keyword: bound})
        for value in wrong:
            assert validate(value, {keyword: bound}) == [f"$: {value} violates {keyword} {bound}"]

    def test_draft4_boolean_exclusive_bounds_are_ignored(self) -> None:
        ok(1, {"minimum": 1, "exclusiveMinimum": True})
        ok(1, {"maximum": 1, "exclusiveMaximum": True})

    def test_numeric_bounds_do_not_apply_to_other_types(self) -> None:
        ok("0", {"minimum": 1})
        ok(True, {"minimum": 5})
        ok([0], {"maximum": -1})

    def test_string_lengths_count_code_points(self) -> None:
        schema = {"minLength": 2, "maxLength": 3}
        ok("ab", schema)
        ok("😀😀😀", schema)  # 3 code points, 12 UTF-8 bytes
        assert validate("a", schema) == ["$: shorter than 2"]
        assert validate("abcd", schema) == ["$: longer than 3"]

    def test_length_bounds_do_not_apply_to_other_types(self) -> None:
        ok(12345, {"maxLength": 1})
        ok([1, 2, 3], {"maxLength": 1})


class TestRef:
    """Local ``$ref`` to ``#/$defs``, ``#/definitions`` and ``#``; others are not followed."""

    def test_ref_to_defs(self) -> None:
        schema = {"$defs": {"pos": {"type": "integer", "minimum": 1}}, "$ref": "#/$defs/pos"}
        ok(3, schema)
        assert validate(0, schema) == ["$: 0 violates minimum 1"]

    def test_ref_to_definitions(self) -> None:
        schema = {
            "definitions": {"name": {"type": "string"}},
            "properties": {"first": {"$ref": "#/definitions/name"}},
        }
        ok({"first": "a"}, schema)
        assert validate({"first": 1}, schema) == ["$.first: expected string, got int"]

    def test_ref_to_root_for_recursive_structures(self) -> None:
        tree = {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
            "additionalProperties": False,
        }
        ok({"children": [{"children": []}, {}]}, tree)
        assert validate({"children": [{"children": [{"x": 1}]}]}, tree) == [
            "$.children[0].children[0]: unexpected property 'x'"
        ]

    def test_json_pointer_escapes(self) -> None:
        schema = {"$defs": {"a/b": {"type": "string"}, "c~d": {"type": "integer"}}}
        bad(1, {**schema, "$ref": "#/$defs/a~1b"})
        bad("x", {**schema, "$ref": "#/$defs/c~0d"})

    def test_ref_siblings_also_apply(self) -> None:
        schema = {"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 1}
        ok("a", schema)
        bad("ab", schema)
        bad(1, schema)

    @pytest.mark.parametrize(
        "ref",
        ["#/$defs/missing", "https://example.com/schema.json", "other.json#/$defs/x", "#/x/0/y"],
    )
    def test_unresolvable_ref_is_not_a_rejection(self, ref: str) -> None:
        ok(1, {"$defs": {"x": {"type": "string"}}, "x": [{"y": False}], "$ref": ref})


class TestBooleanSchemas:
    """``true`` accepts everything, ``false`` nothing, at the root or nested."""

    @pytest.mark.parametrize("value", [None, 0, "x", [], {}, True])
    def test_true_and_false(self, value: Any) -> None:
        ok(value, True)
        assert validate(value, False) == ["$: no value is allowed here"]

    def test_nested_boolean_schemas(self) -> None:
        schema = {"properties": {"a": True, "b": False}}
        ok({"a": 1}, schema)
        assert validate({"b": 1}, schema) == ["$.b: no value is allowed here"]

    def test_empty_schema_accepts_everything(self) -> None:
        values: list[Any] = [None, 1, "x", [1], {"a": {}}]
        for value in values:
            ok(value, {})


class TestUnknownKeywords:
    """Keywords the validator does not implement never cause a rejection."""

    @pytest.mark.parametrize(
        "schema",
        [
            {"pattern": "^z+$"},
            {"format": "email"},
            {"multipleOf": 7},
            {"uniqueItems": True},
            {"contains": {"type": "null"}},
            {"minProperties": 9},
            {"maxProperties": 0},
            {"propertyNames": {"maxLength": 0}},
            {"dependentRequired": {"a": ["zzz"]}},
            {"if": {"type": "object"}, "then": False},
            {"unevaluatedProperties": False},
            {"unevaluatedItems": False},
            {"additionalItems": False, "items": [{}]},
            {"$dynamicRef": "#meta"},
            {"x-vendor-extension": {"type": "null"}},
            {"$schema": "http://json-schema.org/draft-07/schema#", "title": "T", "default": 1},
        ],
        ids=lambda schema: ",".join(schema),
    )
    def test_unknown_keyword_is_ignored(self, schema: dict[str, Any]) -> None:
        for value in ({"a": 1, "b": [1, 1]}, [1, 1, "x"], "hello", 3):
            ok(value, schema)

    def test_non_mapping_schemas_are_ignored(self) -> None:
        ok(1, None)
        ok(1, "string")
        ok(1, [{"type": "string"}])


class TestErrorReporting:
    """At most five errors, each with a JSON-path-like location."""

    def test_errors_are_capped(self) -> None:
        schema = {"items": {"type": "string"}}
        errors = validate(list(range(20)), schema)
        assert errors == [f"$[{i}]: expected string, got int" for i in range(5)]

    def test_several_kinds_of_error_at_once(self) -> None:
        schema = {
            "type": "object",
            "required": ["id"],
            "properties": {"tags": {"type": "array", "maxItems": 1}},
            "additionalProperties": False,
        }
        assert validate({"tags": [1, 2], "x": 0}, schema) == [
            "$: missing required property 'id'",
            "$.tags: more than 1 items",
            "$: unexpected property 'x'",
        ]


def linked_list(length: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(length):
        value = {"next": value}
    return value


class TestRecursionGuard:
    """Deep values and recursive schemas end quickly and never reject wrongly."""

    def test_self_referencing_schema_terminates(self) -> None:
        ok(1, {"$ref": "#"})
        ok(
            1,
            {
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                "$ref": "#/$defs/a",
            },
        )

    def test_very_deep_value_terminates(self) -> None:
        schema = {"type": "object", "properties": {"next": {"$ref": "#"}}}
        ok(linked_list(10_000), schema)

    def test_errors_near_the_root_are_still_found_in_a_deep_value(self) -> None:
        schema = {"type": "object", "required": ["id"], "properties": {"next": {"$ref": "#"}}}
        assert validate(linked_list(10_000), schema)[0] == "$: missing required property 'id'"

    @pytest.mark.parametrize("depth", [10, 31, 32, 33, 40, 100])
    def test_deep_valid_value_under_one_of_is_not_rejected(self, depth: int) -> None:
        # Regression: once the depth limit cut a check short, the truncated option
        # "passed", so oneOf counted two matches (or not saw a match) and rejected.
        schema = {
            "$defs": {
                "node": {
                    "oneOf": [
                        {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}},
                        {"type": "null"},
                    ]
                }
            },
            "$ref": "#/$defs/node",
        }
        ok(linked_list(depth), schema)

    @pytest.mark.parametrize("depth", [10, 33, 40, 100])
    def test_deep_valid_value_under_not_is_not_rejected(self, depth: int) -> None:
        schema = {
            "type": "object",
            "properties": {"next": {"$ref": "#"}},
            "not": {"required": ["bad"]},
        }
        ok(linked_list(depth, leaf={}), schema)

    def test_exponential_schema_is_cut_off_quickly(self) -> None:
        # Regression: two recursive anyOf branches per level made the work 2**depth
        # (about 7 s at depth 18, effectively a hang at 30).
        branch = {"type": "object", "properties": {"a": {"$ref": "#/$defs/t"}}}
        schema = {"$defs": {"t": {"anyOf": [branch, branch]}}, "$ref": "#/$defs/t"}
        value: Any = {}
        for _ in range(20):
            value = {"a": value}
        started = time.monotonic()
        assert validate(value, schema) == []
        assert time.monotonic() - started < 5
