"""The modern era's multi-round results: answering ``input_required`` and re-sending.

A modern server that needs something before it can finish answers with
``resultType: "input_required"``: ``inputRequests`` (elicitation, sampling, roots) and/or
an opaque ``requestState``. :func:`finish` answers every input request of a round
through the user's handlers, concurrently, and sends the original request again with
the answers and the state echoed, for as long as the server keeps asking, bounded by
``Limits.max_input_rounds``. Everything runs under the call's one deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from .._deadline import Deadline
from .._exceptions import Execution, InputRequiredError, MalformedMessage, RequestTimeout
from .._handlers import METHOD_NOT_FOUND, Handlers, RPCFailure, serve
from .._log import Logger
from .._retry import RetryPolicy, backoff_disabled

__all__ = ["check_result_type", "finish"]

# A server that answers `input_required` with state only (nothing to ask) is polled back
# with a short, growing delay.
_STATE_ONLY_DELAY_S = 0.05
_STATE_ONLY_DELAY_MAX_S = 0.25


def check_result_type(result: Any, method: str) -> None:
    """Refuse a result of a ``resultType`` we do not know.

    2026-07-28: absent means "complete"; a value we do not know (an extension we did not
    ask for) means a result we cannot read, which must not pass for a complete one.

    Raises:
        MalformedMessage: an unknown ``resultType``.
    """
    kind = result.get("resultType") if isinstance(result, Mapping) else None
    if kind is not None and kind not in ("complete", "input_required"):
        raise MalformedMessage(
            f"result of unknown resultType {kind!r}"[:200],
            method=method,
            execution=Execution.EXECUTED,
        )


async def finish(
    result: Any,
    *,
    method: str,
    params: Mapping[str, Any] | None,
    resend: Callable[[Mapping[str, Any]], Awaitable[Any]],
    deadline: Deadline,
    handlers: Handlers,
    max_rounds: int,
    policy: RetryPolicy,
    log: Logger,
) -> Any:
    """The call's final result: ``result``, or what the rounds it asks for end with.

    Raises:
        InputRequiredError: the server asked for input no handler can give, a handler
            failed, or the server still asked after ``max_rounds`` rounds.
        MalformedMessage: malformed ``inputRequests``, or an unknown ``resultType``.
        RequestTimeout: the call's deadline passed while the handlers answered (or
            while waiting before a state-only round).
        MCPError: whatever a re-sent request failed with.
    """
    check_result_type(result, method)
    rounds = 0
    delay = _STATE_ONLY_DELAY_S
    while isinstance(result, Mapping) and result.get("resultType") == "input_required":
        rounds += 1
        asked = result.get("inputRequests")
        methods = _input_methods(asked)
        if rounds > max_rounds:
            raise InputRequiredError(
                f"the server still asked for input after {max_rounds} rounds "
                "(Limits.max_input_rounds)",
                methods=methods,
                method=method,
                execution=_input_execution(method),
            )
        again = {
            k: v for k, v in (params or {}).items() if k not in ("inputResponses", "requestState")
        }
        with anyio.CancelScope(deadline=deadline.at) as scope:
            previous = deadline.bind(scope)
            try:
                if asked:
                    again["inputResponses"] = await _answer_inputs(handlers, method, asked)
                    delay = _STATE_ONLY_DELAY_S
                else:
                    if not backoff_disabled():
                        await policy.pause(delay)  # backoff: the server has nothing to ask yet
                    delay = min(delay * 2, _STATE_ONLY_DELAY_MAX_S)
            finally:
                deadline.bind(previous)
        if scope.cancelled_caught:
            raise RequestTimeout(
                "the call's deadline passed while answering the server's input requests",
                method=method,
                execution=_input_execution(method),
            )
        state = result.get("requestState")
        if state is not None:
            again["requestState"] = state  # opaque: echoed byte for byte
        log.debug("request.input_round", method=method, round=rounds, asked=methods)
        result = await resend(again)
        check_result_type(result, method)
    return result


async def _answer_inputs(handlers: Handlers, method: str, asked: Any) -> dict[str, Any]:
    """Run every input request of one round through the handlers, concurrently."""
    if not isinstance(asked, Mapping) or not all(
        isinstance(item, Mapping) and isinstance(item.get("method"), str) for item in asked.values()
    ):
        raise MalformedMessage("input_required result with malformed inputRequests", method=method)
    answers: dict[str, Any] = {}
    failure: InputRequiredError | None = None

    async def answer(key: str, item: Mapping[str, Any], scope: anyio.CancelScope) -> None:
        nonlocal failure
        kind = item["method"]
        try:
            answers[key] = await serve(handlers, kind, item.get("params") or {})
        except Exception as exc:
            if failure is None:
                reason = (
                    f"no handler for {kind} was given"
                    if isinstance(exc, RPCFailure) and exc.code == METHOD_NOT_FOUND
                    else f"the {kind} handler failed: {exc!r}"
                )
                failure = InputRequiredError(
                    f"the server needs input to complete {method}: {reason}",
                    methods=(kind,),
                    method=method,
                    execution=_input_execution(method),
                )
                failure.__cause__ = exc
            scope.cancel()  # one refusal ends the round; do not wait for the others

    async with anyio.create_task_group() as tg:
        for key, item in asked.items():
            tg.start_soon(answer, str(key), item, tg.cancel_scope)
    if failure is not None:
        raise failure  # the exception that ended the round, never swallowed
    return answers


def _input_methods(asked: Any) -> tuple[str, ...]:
    if not isinstance(asked, Mapping):
        return ()
    return tuple(str(item.get("method")) for item in asked.values() if isinstance(item, Mapping))


def _input_execution(method: str) -> Execution:
    # A tool may have done work before it stopped to ask; a read has no effects.
    return Execution.MAYBE if method == "tools/call" else Execution.NOT_EXECUTED
