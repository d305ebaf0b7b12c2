"""The MCP methods of :class:`~resilient_mcp.Client`: tools, resources, prompts,
completion, logging and ping, and the plumbing they share (a typed result, every page
of a list). :mod:`._client` gives them the session, its calls and the tool cache.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, get_args

import anyio
import pydantic

from ._calls import Calls, urgent
from ._catalog import Catalog
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._deadline import Deadline
from ._exceptions import (
    Execution,
    FateUnknown,
    MalformedMessage,
    MCPError,
    ServerError,
    UsageError,
)
from ._handlers import ProgressCallback
from ._log import Logger
from ._retry import RetryPolicy
from ._session import Session
from ._telemetry import CallObserver
from .types import (
    CallToolResult,
    CompleteResult,
    GetPromptResult,
    LoggingLevel,
    Prompt,
    PromptReference,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    Tool,
)

__all__ = ["MCPMethods", "Timeout"]

_Model = TypeVar("_Model", bound=pydantic.BaseModel)
Timeout = float | UseClientDefault | None

# A server that never ends its pagination must not spin us for ever.
_MAX_PAGES = 10_000
# 2026-07-28: a routing header (Mcp-Name, Mcp-Param-*) disagreed with the body.
_HEADER_MISMATCH = -32020


class MCPMethods(abc.ABC):
    """The typed MCP calls; the subclass supplies the session and checks it is open."""

    _session: Session
    _calls: Calls
    _catalog: Catalog
    _log: Logger

    @property
    @abc.abstractmethod
    def session_id(self) -> str | None: ...

    @abc.abstractmethod
    def _check_open(self) -> None: ...

    async def _call(self, method: str, params: Mapping[str, Any] | None, timeout: Timeout) -> Any:
        self._check_open()
        return await self._calls.call(method, params, self._calls.deadline(timeout))

    async def _typed(
        self,
        model: type[_Model],
        method: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        *,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
        observer: CallObserver | None = None,
    ) -> _Model:
        self._check_open()
        result = await self._calls.call(
            method,
            params,
            deadline,
            progress=progress,
            retry=retry,
            idempotent=idempotent,
            observer=observer,
        )
        try:
            return model.model_validate(result)
        except pydantic.ValidationError as exc:
            raise MalformedMessage(
                f"invalid {method} result: {exc.errors(include_url=False)[:3]}",
                method=method,
                session_id=self.session_id,
                execution=Execution.EXECUTED,
            ) from exc

    async def _list(
        self, model: type[_Model], method: str, key: str, timeout: Timeout | Deadline
    ) -> list[_Model]:
        """Every item of a paginated list, following every cursor, in one deadline."""
        self._check_open()
        deadline = timeout if isinstance(timeout, Deadline) else self._calls.deadline(timeout)
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await self._calls.call(
                method, {"cursor": cursor} if cursor is not None else None, deadline
            )
            if not isinstance(page, dict) or not isinstance(page.get(key, []), list):
                raise MalformedMessage(
                    f"invalid {method} result", method=method, execution=Execution.EXECUTED
                )
            items.extend(page.get(key, []))
            cursor = page.get("nextCursor")
            if cursor is None:
                break
            if not isinstance(cursor, str) or cursor in seen:
                raise MalformedMessage(
                    f"{method}: the server repeated or mangled a pagination cursor",
                    method=method,
                    execution=Execution.EXECUTED,
                )
            seen.add(cursor)
        else:
            raise MalformedMessage(f"{method}: more than {_MAX_PAGES} pages", method=method)
        try:
            return [model.model_validate(item) for item in items]
        except pydantic.ValidationError as exc:
            raise MalformedMessage(
                f"invalid {method} result: {exc.errors(include_url=False)[:3]}",
                method=method,
                execution=Execution.EXECUTED,
            ) from exc

    async def list_tools(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Tool]:
        """All tools, following every pagination cursor.

        The list is cached and dropped when the server sends
        ``notifications/tools/list_changed``.
        """
        return await self._tools(timeout)

    async def _tools(self, timeout: Timeout | Deadline) -> list[Tool]:
        self._check_open()  # a closed client refuses, even with the list cached
        self._catalog.for_session(self._session.generation)
        return await self._catalog.tools(
            lambda: self._list(Tool, "tools/list", "tools", timeout),
            modern=lambda: self._session.era == "modern",
            cached=self._session.listen,
        )

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        progress: ProgressCallback | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult:
        """Call a tool and return its result (also when the tool reports ``isError``).

        ``meta`` is sent as the request's ``_meta`` (trace context, a framework's own
        keys); the client's own keys (``progressToken``, the modern era's envelope)
        take precedence over the same keys in it.

        If the tool declares an ``outputSchema`` in the tool list this client fetched
        (:meth:`list_tools`, which agents call first), ``structuredContent`` is validated
        against it. A call never adds a hidden ``tools/list`` round trip.

        At most once: after a failure that leaves unknown whether the tool ran (the
        connection dropped after sending, a 5xx), the call is repeated only if it is
        idempotent: ``idempotent=True``, or (when ``idempotent`` is left ``None``) the
        tool is annotated ``readOnlyHint`` or ``idempotentHint``; if the tool was not in
        the cached list, the list is fetched then, on that failure path only. Failures
        that prove it did not run (not initialized, session lost, refused connection,
        429/503) are retried until the deadline, on a new session if needed.

        Raises:
            InvalidParams: the server refused the name or the arguments (the Python SDK
                reports both as an ``isError`` result instead).
            ToolOutputError: the structured result breaks the tool's output schema.
            FateUnknown: the call may have run and was not repeated.
        """
        params: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
        if meta:
            params["_meta"] = dict(meta)
        self._catalog.for_session(self._session.generation)
        # Unknown: not told by the caller, and the tool is not in the cached list.
        unknown = idempotent is None and self._catalog.hint(name) is None
        if idempotent is None:
            idempotent = self._catalog.annotated_idempotent(name)
        deadline = self._calls.deadline(timeout, retry)
        # Observed as one call: its re-send after the annotations were learned too.
        observer = self._calls.observe("tools/call", params)
        if observer is None:
            return await self._call_tool(
                name, params, deadline, progress, idempotent, unknown, retry, None
            )
        try:
            result = await self._call_tool(
                name, observer.params, deadline, progress, idempotent, unknown, retry, observer
            )
        except BaseException as exc:
            observer.fail(exc)
            raise
        observer.end(result)
        return result

    async def _call_tool(
        self,
        name: str,
        params: Mapping[str, Any] | None,
        deadline: Deadline,
        progress: ProgressCallback | None,
        idempotent: bool,
        unknown: bool,
        retry: RetryPolicy | None,
        observer: CallObserver | None,
    ) -> CallToolResult:
        relisted = False
        while True:
            try:
                result = await self._typed(
                    CallToolResult,
                    "tools/call",
                    params,
                    deadline,
                    progress=progress,
                    retry=retry,
                    idempotent=idempotent,
                    observer=observer,
                )
                break
            except FateUnknown:
                policy = retry or self._calls.policy
                if not unknown or policy.attempts <= 1:
                    raise  # known not idempotent, or the caller allowed no re-send
                if not await self._learned_idempotent(name, deadline):
                    raise
                # The server annotates it readOnlyHint/idempotentHint: a re-send is
                # harmless. It counts as the first re-send of the policy's attempts.
                self._log.info("tool.annotations_fetched", tool=name, idempotent=True)
                unknown, idempotent = False, True
                retry = dataclasses.replace(policy, attempts=policy.attempts - 1)
            except ServerError as exc:
                if relisted or exc.code != _HEADER_MISMATCH or self._session.era != "modern":
                    raise
                # -32020 (refused before running): our idea of the tool's header
                # annotations is stale. The spec: list the tools again and retry, once,
                # within the same deadline.
                self._log.info("tool.headers_stale", tool=name)
                self._catalog.invalidate()
                await self._tools(deadline)
                relisted = True
        if not result.isError:
            self._catalog.check_output(name, result, self.session_id)
        return result

    async def _learned_idempotent(self, name: str, deadline: Deadline) -> bool:
        """After a call of ``name`` failed with an unknown fate: fetch the tool list (on
        this failure path only, within the call's deadline) and read its annotations.
        A list that cannot be fetched teaches nothing: the call stays at most once."""
        # Bounded twice. A server that just failed a call may not answer at all (it stopped
        # reading, say): the caller must hear FateUnknown without waiting out the call's
        # whole deadline. But under a burst of lost sessions the list waits for the next
        # session like any call, which took over 5 s on a loaded machine: so the bound is
        # the user's own knob for a server slow to show up, Timeouts.connect (10 s).
        within = Deadline.after(
            min(deadline.at - anyio.current_time(), self._calls.timeouts.connect)
        )
        try:
            with urgent():
                return await self._catalog.learn(name, lambda: self._tools(within))
        except MCPError as exc:
            self._log.info("tool.annotations_unavailable", tool=name, error=repr(exc))
            return False

    async def list_resources(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Resource]:
        """All resources, following every pagination cursor."""
        return await self._list(Resource, "resources/list", "resources", timeout)

    async def list_resource_templates(
        self, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> list[ResourceTemplate]:
        """All resource templates, following every pagination cursor."""
        return await self._list(
            ResourceTemplate, "resources/templates/list", "resourceTemplates", timeout
        )

    async def read_resource(
        self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> ReadResourceResult:
        """Read one resource.

        Raises:
            ResourceNotFound: the server has no resource at ``uri`` (-32002).
            InvalidParams: the same from servers that use -32602 for it (the Python SDK).
        """
        return await self._typed(
            ReadResourceResult,
            "resources/read",
            {"uri": uri},
            self._calls.deadline(timeout),
        )

    async def subscribe_resource(self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Ask for ``notifications/resources/updated`` about ``uri``.

        Updates arrive on the server's stream, which this opens; receive them with
        ``Handlers(notification=...)``.
        """
        await self._call("resources/subscribe", {"uri": uri}, timeout)
        await self._session.listen()

    async def unsubscribe_resource(
        self, uri: str, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> None:
        """Stop notifications about ``uri``."""
        await self._call("resources/unsubscribe", {"uri": uri}, timeout)

    async def list_prompts(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[Prompt]:
        """All prompts, following every pagination cursor."""
        return await self._list(Prompt, "prompts/list", "prompts", timeout)

    async def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> GetPromptResult:
        """Render a prompt with its arguments.

        Raises:
            ServerError: unknown prompt or missing required arguments: usually
                ``InvalidParams`` (-32602); the Python SDK answers with code 0.
        """
        params: dict[str, Any] = {"name": name}
        if arguments:
            params["arguments"] = dict(arguments)
        return await self._typed(
            GetPromptResult, "prompts/get", params, self._calls.deadline(timeout)
        )

    async def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: Mapping[str, str],
        *,
        context: Mapping[str, str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> CompleteResult:
        """Ask for completions of a prompt or resource-template argument.

        ``argument`` is ``{"name": ..., "value": ...}``; ``context`` the values of
        arguments already chosen.
        """
        params: dict[str, Any] = {
            "ref": ref.model_dump(exclude_none=True),
            "argument": dict(argument),
        }
        if context:
            params["context"] = {"arguments": dict(context)}
        return await self._typed(
            CompleteResult, "completion/complete", params, self._calls.deadline(timeout)
        )

    async def set_logging_level(
        self, level: LoggingLevel, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> None:
        """Ask the server to send log messages of ``level`` and above.

        In the modern era the level travels in every later request's ``_meta`` (there is
        no ``logging/setLevel`` there), so it is checked here rather than by the server.

        Raises:
            UsageError: ``level`` is not one of the eight syslog levels.
        """
        if level not in get_args(LoggingLevel):
            raise UsageError(f"unknown logging level {level!r}: expected {get_args(LoggingLevel)}")
        await self._call("logging/setLevel", {"level": level}, timeout)

    async def ping(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> None:
        """Check that the server answers.

        Raises:
            RequestTimeout: no answer in time (the connection is likely dead).
        """
        await self._call("ping", None, timeout)
