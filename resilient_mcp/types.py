"""Typed MCP data: what the client returns and what handlers receive.

Field names follow the MCP schema (``inputSchema``, ``isError``, ...), so the models read
like the specification (2025-11-25). Every model keeps fields it does not know
(``extra="allow"``): a newer server's additions reach you instead of being dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "Annotations",
    "AnyResourceContents",
    "AudioContent",
    "BlobResourceContents",
    "CallToolResult",
    "ClientCapabilities",
    "CompleteResult",
    "Completion",
    "ContentBlock",
    "CreateMessageRequestParams",
    "CreateMessageResult",
    "DiscoverResult",
    "ElicitRequestParams",
    "ElicitResult",
    "EmbeddedResource",
    "Era",
    "EraMode",
    "GetPromptResult",
    "HTTPTransportName",
    "ImageContent",
    "Implementation",
    "InitializeResult",
    "LoggingLevel",
    "LoggingMessage",
    "ModelPreferences",
    "Progress",
    "Prompt",
    "PromptArgument",
    "PromptMessage",
    "PromptReference",
    "ReadResourceResult",
    "Resource",
    "ResourceContents",
    "ResourceLink",
    "ResourceTemplate",
    "ResourceTemplateReference",
    "Role",
    "Root",
    "SamplingMessage",
    "ServerCapabilities",
    "TextContent",
    "TextResourceContents",
    "Tool",
    "ToolAnnotations",
    "UnknownContent",
]

Role = Literal["user", "assistant"]
Era = Literal["modern", "legacy"]
"""A protocol era: ``"modern"`` (2026-07-28, no handshake) or ``"legacy"`` (``initialize``)."""
EraMode = Literal["auto", "modern", "legacy"]
"""How a client picks the era: detect it (``"auto"``), or force one."""
HTTPTransportName = Literal["auto", "streamable-http", "sse"]
"""How an HTTP server is spoken to: detect it (``"auto"``), or force a transport."""
LoggingLevel = Literal[
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Annotations(_Model):
    """Hints for how a client should use a piece of content."""

    audience: list[Role] | None = None
    priority: float | None = None
    lastModified: str | None = None


class Implementation(_Model):
    """Name and version of an MCP implementation (``clientInfo`` / ``serverInfo``)."""

    name: str
    version: str
    title: str | None = None
    websiteUrl: str | None = None


class ServerCapabilities(_Model):
    """What the server offers. A ``None`` member means the server does not offer it."""

    experimental: dict[str, Any] | None = None
    logging: dict[str, Any] | None = None
    completions: dict[str, Any] | None = None
    prompts: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    tools: dict[str, Any] | None = None


class ClientCapabilities(_Model):
    """What this client offers; only capabilities with a user-supplied handler are set."""

    experimental: dict[str, Any] | None = None
    roots: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None
    elicitation: dict[str, Any] | None = None


class InitializeResult(_Model):
    """The server's answer to ``initialize``."""

    protocolVersion: str
    capabilities: ServerCapabilities
    serverInfo: Implementation
    instructions: str | None = None


class DiscoverResult(_Model):
    """The server's answer to ``server/discover`` (modern era, 2026-07-28).

    ``ttlMs`` and ``cacheScope`` say how long, and for whom, the answer may be reused
    (like HTTP ``Cache-Control``: ``"public"`` may be shared between users).
    """

    supportedVersions: list[str]
    capabilities: ServerCapabilities
    instructions: str | None = None
    ttlMs: float = 0
    cacheScope: Literal["public", "private"] | str = "private"


# --- content --------------------------------------------------------------------------------


class TextContent(_Model):
    type: Literal["text"] = "text"
    text: str
    annotations: Annotations | None = None


class ImageContent(_Model):
    type: Literal["image"] = "image"
    data: str
    """Base64-encoded image bytes."""
    mimeType: str
    annotations: Annotations | None = None


class AudioContent(_Model):
    type: Literal["audio"] = "audio"
    data: str
    """Base64-encoded audio bytes."""
    mimeType: str
    annotations: Annotations | None = None


class ResourceContents(_Model):
    uri: str
    mimeType: str | None = None


class TextResourceContents(ResourceContents):
    text: str


class BlobResourceContents(ResourceContents):
    blob: str
    """Base64-encoded bytes."""


def _contents_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "blob" if "blob" in value and "text" not in value else "text"
    return "blob" if isinstance(value, BlobResourceContents) else "text"


AnyResourceContents = Annotated[
    Annotated[TextResourceContents, Tag("text")] | Annotated[BlobResourceContents, Tag("blob")],
    Discriminator(_contents_tag),
]
"""Contents of a resource: text or base64 blob, told apart by which field is present."""


class EmbeddedResource(_Model):
    type: Literal["resource"] = "resource"
    resource: AnyResourceContents
    annotations: Annotations | None = None


class ResourceLink(_Model):
    type: Literal["resource_link"] = "resource_link"
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None
    size: int | None = None
    annotations: Annotations | None = None


class UnknownContent(_Model):
    """A content block of a type this client does not know yet (all fields kept)."""

    type: str


_CONTENT_TYPES = {"text", "image", "audio", "resource", "resource_link"}


def _content_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _CONTENT_TYPES else "unknown"


ContentBlock = Annotated[
    Annotated[TextContent, Tag("text")]
    | Annotated[ImageContent, Tag("image")]
    | Annotated[AudioContent, Tag("audio")]
    | Annotated[EmbeddedResource, Tag("resource")]
    | Annotated[ResourceLink, Tag("resource_link")]
    | Annotated[UnknownContent, Tag("unknown")],
    Discriminator(_content_tag),
]
"""Any piece of content in a tool result, prompt message or sampling message."""


# --- tools ------------------------------------------------------------------------------


class ToolAnnotations(_Model):
    """Hints about a tool's behaviour. Untrusted unless the server is."""

    title: str | None = None
    readOnlyHint: bool | None = None
    destructiveHint: bool | None = None
    idempotentHint: bool | None = None
    openWorldHint: bool | None = None


class Tool(_Model):
    """A tool the server offers."""

    name: str
    title: str | None = None
    description: str | None = None
    inputSchema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    outputSchema: dict[str, Any] | None = None
    annotations: ToolAnnotations | None = None


class CallToolResult(_Model):
    """The result of ``tools/call``.

    A tool that fails reports it *in* the result (``isError``), usually with text meant
    for the model; :meth:`raise_for_error` turns that into an exception when you prefer.
    """

    content: list[ContentBlock] = Field(default_factory=list)
    structuredContent: dict[str, Any] | None = None
    isError: bool = False

    @property
    def text(self) -> str:
        """All text content blocks joined by newlines (empty if there are none)."""
        return "\n".join(block.text for block in self.content if isinstance(block, TextContent))

    def raise_for_error(self) -> CallToolResult:
        """Return self, or raise if the tool reported failure.

        Raises:
            ToolError: ``isError`` is true; the error carries this result.
        """
        if self.isError:
            from ._exceptions import ToolError

            raise ToolError(self.text or "tool reported an error", result=self, method="tools/call")
        return self


# --- resources --------------------------------------------------------------------------


class Resource(_Model):
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None
    size: int | None = None
    annotations: Annotations | None = None


class ResourceTemplate(_Model):
    uriTemplate: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None
    annotations: Annotations | None = None


class ReadResourceResult(_Model):
    contents: list[AnyResourceContents]


# --- prompts ------------------------------------------------------------------------------


class PromptArgument(_Model):
    name: str
    title: str | None = None
    description: str | None = None
    required: bool | None = None


class Prompt(_Model):
    name: str
    title: str | None = None
    description: str | None = None
    arguments: list[PromptArgument] | None = None


class PromptMessage(_Model):
    role: Role
    content: ContentBlock


class GetPromptResult(_Model):
    description: str | None = None
    messages: list[PromptMessage]


# --- completion ------------------------------------------------------------------------------


class PromptReference(_Model):
    type: Literal["ref/prompt"] = "ref/prompt"
    name: str


class ResourceTemplateReference(_Model):
    type: Literal["ref/resource"] = "ref/resource"
    uri: str


class Completion(_Model):
    values: list[str]
    total: int | None = None
    hasMore: bool | None = None


class CompleteResult(_Model):
    completion: Completion


# --- notifications -------------------------------------------------------------------------


class LoggingMessage(_Model):
    """A ``notifications/message`` from the server."""

    level: LoggingLevel
    logger: str | None = None
    data: Any = None


class Progress(_Model):
    """A ``notifications/progress`` for one of our requests."""

    progress: float
    total: float | None = None
    message: str | None = None


# --- server → client requests ----------------------------------------------------------------


class Root(_Model):
    """A root the client exposes to the server (``roots/list``)."""

    uri: str
    name: str | None = None


class SamplingMessage(_Model):
    role: Role
    content: ContentBlock | list[ContentBlock]


class ModelPreferences(_Model):
    hints: list[dict[str, Any]] | None = None
    costPriority: float | None = None
    speedPriority: float | None = None
    intelligencePriority: float | None = None


class CreateMessageRequestParams(_Model):
    """What the server asks the client's LLM to do (``sampling/createMessage``)."""

    messages: list[SamplingMessage]
    maxTokens: int
    modelPreferences: ModelPreferences | None = None
    systemPrompt: str | None = None
    includeContext: str | None = None
    temperature: float | None = None
    stopSequences: list[str] | None = None
    metadata: dict[str, Any] | None = None


class CreateMessageResult(_Model):
    """The client's answer to ``sampling/createMessage``."""

    role: Role = "assistant"
    content: ContentBlock | list[ContentBlock]
    model: str
    stopReason: str | None = None


class ElicitRequestParams(_Model):
    """What the server asks the user (``elicitation/create``)."""

    message: str
    mode: str | None = None
    requestedSchema: dict[str, Any] | None = None
    url: str | None = None
    elicitationId: str | None = None


class ElicitResult(_Model):
    """The user's answer to an elicitation."""

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None
