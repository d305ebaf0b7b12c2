"""What a tool call came to, in terms every agent framework can map: :class:`ToolOutcome`.

Frameworks differ in how they show a tool's result to the model and in which failures
they retry, but they all need the same four answers: it worked; the tool itself said it
failed (``isError``, text meant for the model); it certainly did not run (nothing
happened, the caller may try again later); or it may have run and we cannot say (the
only outcome that must end the framework's retry loop, or a side effect runs twice).
Content is converted here once (base64 decoded, resources and links unpacked), so an
adapter only renames fields into its framework's types.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._exceptions import Execution, MCPError, ToolError
from .types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

__all__ = ["ContentPart", "PartKind", "ToolOutcome", "ToolStatus"]

ToolStatus = Literal["ok", "tool_error", "not_executed", "maybe_executed"]
"""How a tool call ended (see :class:`ToolOutcome`)."""
PartKind = Literal["text", "image", "audio", "resource", "link", "unknown"]
"""The kind of one piece of a tool's result (see :class:`ContentPart`)."""


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One content block of a tool result, converted once for every framework.

    Attributes:
        kind: ``"text"``, ``"image"``, ``"audio"``, ``"resource"`` (embedded),
            ``"link"`` (a ``resource_link``) or ``"unknown"`` (a block type this client
            does not know, or binary data that is not valid base64).
        text: the text (a text block, a text resource), or a link's description.
        data: the decoded bytes of an image, audio clip or blob resource.
        mime_type: the MIME type, when the server gave one.
        uri: the URI of a resource or link.
        name: the name of a link.
        block: the content block as the server sent it.
    """

    kind: PartKind
    block: ContentBlock = field(repr=False)
    text: str | None = None
    data: bytes | None = field(default=None, repr=False)
    mime_type: str | None = None
    uri: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, block: ContentBlock) -> ContentPart:
        """Convert one content block (never raises: what cannot be read is ``unknown``)."""
        if isinstance(block, TextContent):
            return cls("text", block, text=block.text)
        if isinstance(block, ImageContent | AudioContent):
            data = _decode(block.data)
            if data is None:
                return cls("unknown", block, mime_type=block.mimeType)
            kind: PartKind = "image" if isinstance(block, ImageContent) else "audio"
            return cls(kind, block, data=data, mime_type=block.mimeType)
        if isinstance(block, EmbeddedResource):
            contents = block.resource
            if isinstance(contents, TextResourceContents):
                return cls(
                    "resource",
                    block,
                    text=contents.text,
                    mime_type=contents.mimeType,
                    uri=contents.uri,
                )
            if isinstance(contents, BlobResourceContents):
                data = _decode(contents.blob)
                if data is not None:
                    return cls(
                        "resource", block, data=data, mime_type=contents.mimeType, uri=contents.uri
                    )
            return cls("unknown", block, mime_type=contents.mimeType, uri=contents.uri)
        if isinstance(block, ResourceLink):
            return cls(
                "link",
                block,
                text=block.description,
                mime_type=block.mimeType,
                uri=block.uri,
                name=block.name,
            )
        return cls("unknown", block)

    @property
    def base64(self) -> str | None:
        """The binary data as the server sent it (base64), for frameworks that want it
        encoded: no second encoding of what ``data`` decoded."""
        if self.data is None:
            return None
        block = self.block
        if isinstance(block, ImageContent | AudioContent):
            return block.data
        if isinstance(block, EmbeddedResource) and isinstance(block.resource, BlobResourceContents):
            return block.resource.blob
        return None

    def describe(self) -> str:
        """A short text standing for this part where a framework takes text only."""
        if self.kind == "text":
            return self.text or ""
        if self.kind == "resource" and self.text is not None:
            return self.text
        if self.kind == "link":
            what = f"[link {self.name}: {self.uri}]"
            return f"{what} {self.text}" if self.text else what
        size = f", {len(self.data)} bytes" if self.data is not None else ""
        mime = f" {self.mime_type}" if self.mime_type else ""
        where = f" {self.uri}" if self.uri else ""
        return f"[{self.kind}{mime}{where}{size}]"


def _decode(data: str) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How one tool call ended: the one thing every framework adapter maps from.

    ``status`` is one of:

    - ``"ok"``: the tool ran and returned ``parts`` (and ``structured`` content);
    - ``"tool_error"``: the tool ran and reported failure (``isError``, or a result that
      breaks its ``outputSchema``); ``message`` is the server's text, for the model;
    - ``"not_executed"``: the call certainly did not run (refused, unreachable, every
      retry the deadline allowed failed before it reached the tool); nothing changed;
    - ``"maybe_executed"``: the call may have run (or ran) and no usable result came
      back: a side-effecting call that must not be repeated. Frameworks must take their
      terminal path for it, never their "try again" path.

    Attributes:
        tool: the name the tool was called by.
        status: see above.
        parts: the converted content (empty unless the tool answered).
        structured: the ``structuredContent``, if any.
        result: the tool's full result, if it answered.
        error: the typed error, for ``not_executed`` and ``maybe_executed`` (and a
            result that broke its output schema).
    """

    tool: str
    status: ToolStatus
    parts: tuple[ContentPart, ...] = ()
    structured: Mapping[str, Any] | None = None
    result: CallToolResult | None = field(default=None, repr=False)
    error: MCPError | None = None

    @classmethod
    def of_result(cls, tool: str, result: CallToolResult) -> ToolOutcome:
        """The outcome of a call that returned ``result`` (``ok`` or ``tool_error``)."""
        return cls(
            tool,
            "tool_error" if result.isError else "ok",
            tuple(ContentPart.of(block) for block in result.content),
            result.structuredContent,
            result,
        )

    @classmethod
    def of_error(cls, tool: str, error: MCPError) -> ToolOutcome:
        """The outcome of a call that raised ``error``.

        A :class:`~resilient_mcp.ToolError` (an output-schema breach) keeps the result it
        carries and is a ``tool_error``; otherwise the error's ``execution`` decides:
        ``NOT_EXECUTED`` is ``not_executed``; ``MAYBE`` and ``EXECUTED`` (it ran, but
        what came back cannot be used) are ``maybe_executed``.
        """
        if isinstance(error, ToolError) and error.result is not None:
            result = error.result
            parts = tuple(ContentPart.of(block) for block in result.content)
            return cls(tool, "tool_error", parts, result.structuredContent, result, error)
        status: ToolStatus = (
            "not_executed" if error.execution is Execution.NOT_EXECUTED else "maybe_executed"
        )
        return cls(tool, status, error=error)

    @property
    def ok(self) -> bool:
        """Whether the tool ran and did not report failure."""
        return self.status == "ok"

    @property
    def terminal(self) -> bool:
        """Whether the framework must not call this tool again for this step (its effect
        is unknown): true for ``maybe_executed``."""
        return self.status == "maybe_executed"

    @property
    def text(self) -> str:
        """Every text part joined by newlines (empty if none)."""
        return "\n".join(part.text or "" for part in self.parts if part.kind == "text")

    @property
    def message(self) -> str:
        """What to show the model: the result's text (``structured`` as JSON when the
        tool sent no text, placeholders for other parts); for failures, a sentence
        that says what happened and whether the tool ran, and never asks for a retry
        of a call that may have run."""
        if self.status in ("ok", "tool_error"):
            text = "\n".join(part.describe() for part in self.parts if part.describe())
            if not text and self.structured is not None:
                text = json.dumps(self.structured, ensure_ascii=False)
            if self.status == "tool_error":
                if self.error is not None:
                    return f"{text}\n{self.error.message}" if text else self.error.message
                return text or f"The tool {self.tool!r} reported an error without a message."
            return text
        reason = self.error.message if self.error is not None else "unknown failure"
        if self.status == "not_executed":
            return f"The tool {self.tool!r} did not run, so nothing changed: {reason}"
        return (
            f"The call to the tool {self.tool!r} failed after it was sent ({reason}). It may "
            "or may not have run, so its effects are unknown; it was not repeated, so that "
            "it cannot run twice. Check its effects before relying on them."
        )
