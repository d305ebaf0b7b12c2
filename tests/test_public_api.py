"""The public surface of resilient_mcp: what is exported, and the promises it makes.

A name in ``__all__`` is a commitment; these tests make accidental changes to it (a
missing export, an exception outside the tree, a config object that became mutable)
fail loudly.
"""

from __future__ import annotations

import dataclasses
import inspect
import types as pytypes
import typing
from typing import Any, Literal, cast

import pydantic
import pytest

import resilient_mcp
from resilient_mcp import (
    Execution,
    Limits,
    MCPError,
    RequestTimeout,
    Timeouts,
    ToolError,
)
from resilient_mcp import types as mcp_types
from resilient_mcp.types import (
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    UnknownContent,
)


def all_sort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then everything else."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def public_exceptions() -> list[type[BaseException]]:
    return [
        obj
        for obj in (getattr(resilient_mcp, name) for name in resilient_mcp.__all__)
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ]


def mcp_error_subclasses(cls: type[MCPError]) -> set[type[MCPError]]:
    found: set[type[MCPError]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *mcp_error_subclasses(sub)}
    return found


def referenced_classes(annotation: Any) -> set[type]:
    """Every class an annotation mentions, through unions, generics and ``Annotated``."""
    found: set[type] = set()
    if isinstance(annotation, type) and not typing.get_args(annotation):
        found.add(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        found.add(origin)
    for arg in typing.get_args(annotation):
        found |= referenced_classes(arg)
    return found


def publicly_reachable(cls: type) -> bool:
    name = cls.__name__
    return getattr(resilient_mcp, name, None) is cls or getattr(mcp_types, name, None) is cls


class TestExports:
    """``__all__`` lists are sorted, duplicate-free and name things that exist."""

    @pytest.mark.parametrize("module", [resilient_mcp, mcp_types], ids=lambda m: m.__name__)
    def test_all_is_sorted_and_unique(self, module: pytypes.ModuleType) -> None:
        names = list(module.__all__)
        assert len(names) == len(set(names))
        assert names == sorted(names, key=all_sort_key)

    @pytest.mark.parametrize("module", [resilient_mcp, mcp_types], ids=lambda m: m.__name__)
    def test_every_name_in_all_exists(self, module: pytypes.ModuleType) -> None:
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == []

    def test_star_import_gives_exactly_all(self) -> None:
        namespace: dict[str, Any] = {}
        exec("from resilient_mcp import *", namespace)
        namespace.pop("__builtins__")
        assert set(namespace) == set(resilient_mcp.__all__)

    def test_version_is_a_string(self) -> None:
        assert isinstance(resilient_mcp.__version__, str)
        assert resilient_mcp.__version__

    @pytest.mark.parametrize(
        "private",
        [
            "_config",
            "_exceptions",
            "_client",
            "_versions",
            "_stats",
            "_sync",
            "_group",
            "_group_sync",
        ],
    )
    def test_private_modules_re_exported_in_full(self, private: str) -> None:
        module = __import__(f"resilient_mcp.{private}", fromlist=["__all__"])
        for name in module.__all__:
            assert name in resilient_mcp.__all__, f"{private}.{name} is not re-exported"
            assert getattr(resilient_mcp, name) is getattr(module, name)

    def test_every_mcp_error_subclass_is_exported(self) -> None:
        defined = {
            cls
            for cls in mcp_error_subclasses(MCPError)
            if cls.__module__ == "resilient_mcp._exceptions"
        }
        assert {cls for cls in defined if not publicly_reachable(cls)} == set()


class TestTypesModule:
    """``resilient_mcp.types`` exports only models and type aliases, and leaks none."""

    def test_names_are_models_or_type_aliases(self) -> None:
        for name in mcp_types.__all__:
            obj = getattr(mcp_types, name)
            if isinstance(obj, type):
                assert issubclass(obj, pydantic.BaseModel), name
                assert obj.__module__ == "resilient_mcp.types", name
            else:
                assert typing.get_origin(obj) in (Literal, typing.Annotated), name

    def test_every_public_model_in_the_module_is_exported(self) -> None:
        defined = [
            name
            for name, obj in vars(mcp_types).items()
            if isinstance(obj, type)
            and issubclass(obj, pydantic.BaseModel)
            and obj.__module__ == "resilient_mcp.types"
            and not name.startswith("_")
        ]
        assert sorted(set(defined) - set(mcp_types.__all__)) == []

    def test_field_types_of_public_models_are_public(self) -> None:
        for name in mcp_types.__all__:
            model = getattr(mcp_types, name)
            if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
                continue
            for field_name, field in model.model_fields.items():
                for cls in referenced_classes(field.annotation):
                    if cls.__module__.startswith("resilient_mcp"):
                        assert publicly_reachable(cls), f"{name}.{field_name}: {cls!r}"

    def test_models_keep_unknown_fields(self) -> None:
        tool = mcp_types.Tool.model_validate({"name": "t", "_meta": {"x": 1}, "icons": []})
        assert tool.model_extra == {"_meta": {"x": 1}, "icons": []}


class TestSignaturesUsePublicTypes:
    """Public callables mention only public classes (or a sentinel's type)."""

    SENTINEL_TYPES: typing.ClassVar[set[type]] = {type(resilient_mcp.USE_CLIENT_DEFAULT)}

    def callables(self) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name in resilient_mcp.__all__:
            obj = getattr(resilient_mcp, name)
            if inspect.isfunction(obj):
                found.append((name, obj))
            elif isinstance(obj, type) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member):
                        found.append((f"{name}.{attr}", member))
        return found

    def test_annotations_reference_only_public_classes(self) -> None:
        leaks: list[str] = []
        for where, function in self.callables():
            for param, hint in typing.get_type_hints(function, include_extras=True).items():
                for cls in referenced_classes(hint) - self.SENTINEL_TYPES:
                    if cls.__module__.startswith("resilient_mcp") and not publicly_reachable(cls):
                        leaks.append(f"{where}({param}): {cls.__module__}.{cls.__qualname__}")
        assert leaks == []


class TestExceptionTree:
    """Every public exception is an ``MCPError`` and documents itself."""

    def test_every_public_exception_is_an_mcp_error(self) -> None:
        exceptions = public_exceptions()
        assert MCPError in exceptions
        assert [cls for cls in exceptions if not issubclass(cls, MCPError)] == []

    @pytest.mark.parametrize("cls", public_exceptions(), ids=lambda cls: cls.__name__)
    def test_every_exception_has_its_own_docstring(self, cls: type[BaseException]) -> None:
        doc = cls.__dict__.get("__doc__")
        assert isinstance(doc, str)
        assert doc.strip()

    @pytest.mark.parametrize("cls", public_exceptions(), ids=lambda cls: cls.__name__)
    def test_every_exception_has_an_execution_default(self, cls: type[BaseException]) -> None:
        assert isinstance(cast(type[MCPError], cls).default_execution, Execution)

    def test_execution_has_exactly_three_values(self) -> None:
        assert {member.name: member.value for member in Execution} == {
            "NOT_EXECUTED": "not_executed",
            "EXECUTED": "executed",
            "MAYBE": "maybe",
        }

    def test_request_timeout_is_a_builtin_timeout_error(self) -> None:
        assert issubclass(RequestTimeout, TimeoutError)
        assert issubclass(RequestTimeout, MCPError)
        with pytest.raises(TimeoutError) as caught:
            raise RequestTimeout("no answer", method="tools/call", request_id=7)
        assert isinstance(caught.value, MCPError)
        assert caught.value.args == ("no answer",)


class TestTimeouts:
    """``Timeouts`` is keyword-only, frozen and refuses non-positive durations."""

    NUMERIC_FIELDS = ("request", "initialize", "connect", "max_total", "close")

    @pytest.mark.parametrize("field", NUMERIC_FIELDS)
    @pytest.mark.parametrize("value", [0, 0.0, -1, -0.001])
    def test_non_positive_values_are_rejected(self, field: str, value: float) -> None:
        with pytest.raises(ValueError, match=field):
            Timeouts(**cast(dict[str, Any], {field: value}))

    @pytest.mark.parametrize("field", NUMERIC_FIELDS)
    def test_positive_values_are_accepted(self, field: str) -> None:
        assert getattr(Timeouts(**cast(dict[str, Any], {field: 0.001})), field) == 0.001

    def test_request_and_max_total_may_be_unlimited(self) -> None:
        timeouts = Timeouts(request=None, max_total=None)
        assert timeouts.request is None
        assert timeouts.max_total is None

    def test_positional_arguments_are_refused(self) -> None:
        with pytest.raises(TypeError):
            cast(Any, Timeouts)(5.0)

    def test_frozen(self) -> None:
        timeouts = Timeouts()
        with pytest.raises(dataclasses.FrozenInstanceError):
            cast(Any, timeouts).request = 1.0
        assert timeouts.request == 60.0

    def test_equal_by_value_and_hashable(self) -> None:
        assert Timeouts(request=5) == Timeouts(request=5)
        assert len({Timeouts(), Timeouts()}) == 1


class TestLimits:
    """``Limits`` is keyword-only, frozen and refuses values below one."""

    FIELDS = ("max_queued", "max_message_size", "max_pending_notifications")

    @pytest.mark.parametrize("field", FIELDS)
    @pytest.mark.parametrize("value", [0, -1])
    def test_non_positive_values_are_rejected(self, field: str, value: int) -> None:
        with pytest.raises(ValueError, match=field):
            Limits(**{field: value})

    @pytest.mark.parametrize("field", FIELDS)
    def test_one_is_accepted(self, field: str) -> None:
        assert getattr(Limits(**{field: 1}), field) == 1

    def test_positional_arguments_are_refused(self) -> None:
        with pytest.raises(TypeError):
            cast(Any, Limits)(10)

    def test_frozen(self) -> None:
        limits = Limits()
        with pytest.raises(dataclasses.FrozenInstanceError):
            cast(Any, limits).max_queued = 1


class TestCallToolResult:
    """``text`` and ``raise_for_error`` on tool results."""

    def test_raise_for_error_returns_self_when_the_tool_succeeded(self) -> None:
        result = CallToolResult(content=[TextContent(text="ok")])
        assert result.raise_for_error() is result

    def test_raise_for_error_raises_tool_error_carrying_the_result(self) -> None:
        result = CallToolResult.model_validate(
            {"content": [{"type": "text", "text": "disk full"}], "isError": True}
        )
        with pytest.raises(ToolError) as caught:
            result.raise_for_error()
        error = caught.value
        assert error.result is result
        assert error.message == "disk full"
        assert error.method == "tools/call"
        assert error.execution is Execution.EXECUTED
        assert isinstance(error, MCPError)

    def test_raise_for_error_without_text_still_has_a_message(self) -> None:
        result = CallToolResult(isError=True)
        with pytest.raises(ToolError) as caught:
            result.raise_for_error()
        assert caught.value.message
        assert caught.value.result is result

    def test_text_joins_text_blocks_with_newlines(self) -> None:
        result = CallToolResult.model_validate(
            {
                "content": [
                    {"type": "text", "text": "first"},
                    {"type": "image", "data": "AAAA", "mimeType": "image/png"},
                    {"type": "text", "text": "second"},
                    {"type": "hologram"},
                ]
            }
        )
        assert result.text == "first\nsecond"

    def test_text_is_empty_without_text_blocks(self) -> None:
        assert CallToolResult().text == ""
        image = ImageContent(data="AAAA", mimeType="image/png")
        assert CallToolResult(content=[image]).text == ""

    def test_defaults(self) -> None:
        result = CallToolResult.model_validate({})
        assert result.content == []
        assert result.structuredContent is None
        assert result.isError is False


class TestContentBlocks:
    """Content blocks parse into their classes; unknown ones are kept, not rejected."""

    def test_known_types_parse_into_their_classes(self) -> None:
        result = CallToolResult.model_validate(
            {
                "content": [
                    {"type": "text", "text": "t"},
                    {"type": "image", "data": "AAAA", "mimeType": "image/png"},
                    {"type": "resource_link", "uri": "file:///a", "name": "a"},
                    {"type": "resource", "resource": {"uri": "file:///b", "text": "b"}},
                ]
            }
        )
        assert [type(block) for block in result.content] == [
            TextContent,
            ImageContent,
            ResourceLink,
            EmbeddedResource,
        ]

    def test_unknown_content_type_keeps_its_fields(self) -> None:
        raw = {"type": "hologram", "frames": 3, "meta": {"fps": 24}, "data": [1, 2]}
        result = CallToolResult.model_validate({"content": [raw]})
        (block,) = result.content
        assert isinstance(block, UnknownContent)
        assert block.type == "hologram"
        assert block.model_extra == {"frames": 3, "meta": {"fps": 24}, "data": [1, 2]}
        assert block.model_dump() == raw

    def test_unknown_content_round_trips_through_json(self) -> None:
        raw = {"content": [{"type": "x-future", "payload": "p"}], "isError": False}
        result = CallToolResult.model_validate(raw)
        again = CallToolResult.model_validate_json(result.model_dump_json())
        assert isinstance(again.content[0], UnknownContent)
        assert again.content[0].model_dump() == {"type": "x-future", "payload": "p"}

    def test_known_type_keeps_extra_fields(self) -> None:
        block = CallToolResult.model_validate(
            {"content": [{"type": "text", "text": "t", "_meta": {"k": "v"}}]}
        ).content[0]
        assert isinstance(block, TextContent)
        assert block.model_extra == {"_meta": {"k": "v"}}

    def test_embedded_resource_with_text(self) -> None:
        resource = EmbeddedResource.model_validate(
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "hello"}}
        )
        assert isinstance(resource.resource, TextResourceContents)
        assert resource.resource.text == "hello"
        assert resource.resource.mimeType is None

    def test_embedded_resource_with_blob(self) -> None:
        resource = EmbeddedResource.model_validate(
            {
                "type": "resource",
                "resource": {"uri": "file:///a.bin", "blob": "AAEC", "mimeType": "x/y"},
            }
        )
        assert isinstance(resource.resource, BlobResourceContents)
        assert resource.resource.blob == "AAEC"
        assert resource.resource.mimeType == "x/y"

    def test_embedded_resource_with_text_and_blob_is_text(self) -> None:
        resource = EmbeddedResource.model_validate(
            {"resource": {"uri": "file:///a", "text": "t", "blob": "AAEC"}}
        )
        assert isinstance(resource.resource, TextResourceContents)
        assert resource.resource.model_extra == {"blob": "AAEC"}

    def test_embedded_resource_accepts_model_instances(self) -> None:
        blob = BlobResourceContents(uri="file:///a", blob="AAEC")
        assert EmbeddedResource(resource=blob).resource is blob

    def test_embedded_resource_without_text_or_blob_is_rejected(self) -> None:
        with pytest.raises(pydantic.ValidationError):
            EmbeddedResource.model_validate({"resource": {"uri": "file:///a"}})
