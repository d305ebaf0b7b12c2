"""Which row of the dialect table a server's raw answers match.

The rows are the fault server's profiles (``resilient_mcp.testing._profiles``), each
taken from the source of a real server (docs server-dialects.md). A row matches when
every answer the probe observed is the one that server would send.
"""

from __future__ import annotations

import json
from typing import Any

from resilient_mcp.testing._profiles import DIALECTS, Dialect, HttpAnswer

from ._probe import Answer, Observations


def _same(answer: Answer | None, expected: HttpAnswer) -> bool:
    if answer is None or answer.status != expected.status:
        return False
    body = expected.body.decode()
    if expected.content_type.startswith("text/plain"):
        return answer.body.strip() == body.strip()
    try:
        want = json.loads(body)
    except json.JSONDecodeError:
        return False
    got = answer.rpc() or {}
    same_error: bool = got.get("error", got.get("jsonRpcError")) == want.get(
        "error", want.get("jsonRpcError")
    )
    return same_error and got.get("id") == want.get("id")


def _early_ok(dialect: Dialect, obs: Observations) -> bool:
    early = obs.answers.get("early")
    if early is None:
        return True
    if dialect.gate_on == "initialize" or dialect.early == "serve":
        # The gate opened with the initialize result: the early list is served.
        return early.status == 200 and "result" in (early.rpc() or {})
    if dialect.early == "in-band":
        code, message = early.error_of()
        return (
            early.status == 200
            and code == dialect.early_code
            and message == dialect.early_message.replace("{method}", "tools/list")
        )
    assert dialect.early_answer is not None
    if not _same(early, dialect.early_answer):
        return False
    if dialect.early == "kill":
        return _same(obs.answers.get("after_early"), dialect.gone)
    return True


def _unknown_ok(dialect: Dialect, obs: Observations) -> bool:
    answer = obs.answers.get("unknown_method")
    if answer is None:
        return True
    code, _ = answer.error_of()
    return code == (-32602 if dialect.unknown_as_invalid_params else -32601)


def _missing_ok(dialect: Dialect, obs: Observations) -> bool:
    answer = obs.answers.get("missing_session")
    if answer is None:
        return True
    if dialect.missing == "temporary":
        code, _message = answer.error_of()
        return answer.status == 200 and code == dialect.early_code
    return _same(answer, dialect.missing_answer)


def _mismatches(dialect: Dialect, obs: Observations, *, sse: bool) -> list[str]:
    checks = {
        "missing_session": _missing_ok(dialect, obs),
        "bogus_session": _same(obs.answers.get("bogus_session"), dialect.gone),
    }
    if not sse:
        checks["early"] = _early_ok(dialect, obs)
        checks["unknown_method"] = _unknown_ok(dialect, obs)
    return [name for name, ok in checks.items() if not ok]


def match(obs: Observations, *, sse: bool) -> list[str]:
    """The names of every row whose answers are all the ones observed."""
    return [name for name, miss in nearest(obs, sse=sse).items() if not miss]


def nearest(obs: Observations, *, sse: bool) -> dict[str, list[str]]:
    """The rows that differ least from what was observed, each with the steps where it
    differs (empty: an exact match). Rows that differ in more than one step are left out:
    they say nothing useful about this server."""
    scored = {
        name: _mismatches(dialect, obs, sse=sse)
        for name, dialect in DIALECTS.items()
        if (name == "python-sdk-sse") == sse
    }
    best = min((len(miss) for miss in scored.values()), default=0)
    return {name: miss for name, miss in scored.items() if len(miss) == best and best <= 1}


def describe(obs: Observations) -> dict[str, Any]:
    """The dialect part of the probe's report."""
    return {key: answer.summary() for key, answer in obs.answers.items()}
