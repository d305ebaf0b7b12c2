"""``probe``: what a server speaks and how it answers the mistakes clients make."""

from __future__ import annotations

import time
from typing import Any

import anyio
import click

import resilient_mcp
from resilient_mcp import MCPError

from . import _render as render
from ._common import json_flag, make_target, target_options
from ._dialect import describe, match, nearest
from ._exit import Exit, error_class, exit_code
from ._probe import probe_sse, probe_streamable
from ._probe_stdio import probe_stdio_early
from ._target import Target


class StepRecorder:
    """A structlog-like logger that records the library's own events with timings."""

    def __init__(self, steps: list[dict[str, Any]], start: float, **bound: Any) -> None:
        self._steps, self._start, self._bound = steps, start, bound

    def bind(self, **values: Any) -> StepRecorder:
        return StepRecorder(self._steps, self._start, **{**self._bound, **values})

    def _record(self, event: str, **values: Any) -> None:
        keep = {
            k: v
            for k, v in {**self._bound, **values}.items()
            if isinstance(v, str | int | float | bool) and k != "session_id"
        }
        self._steps.append(
            {"at": round(time.perf_counter() - self._start, 4), "event": event, **keep}
        )

    debug = info = warning = error = exception = _record


async def _probe(target: Target) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    start = time.perf_counter()
    report: dict[str, Any] = {"target": target.label, "detection": steps}
    options = {
        **target.options(),
        "logger": StepRecorder(steps, start),
        "detection_cache": resilient_mcp.DetectionCache(),
    }
    async with resilient_mcp.connect(target.server, **options) as client:
        report["connect_seconds"] = round(time.perf_counter() - start, 4)
        report.update(
            era=client.era,
            transport=client.transport,
            protocol_version=client.protocol_version,
            server_info=render.dump(client.server_info) if client.server_info else None,
            capabilities=render.dump(client.capabilities) if client.capabilities else None,
        )
        unknown: dict[str, Any]
        try:
            await client.request("resilient-mcp/probe-unknown-method", {})
            unknown = {"answered": "result"}
        except MCPError as exc:
            unknown = {
                "answered": error_class(exc),
                "code": getattr(exc, "code", None),
                "message": exc.message,
            }
        report["unknown_method"] = unknown
    dialect: dict[str, Any] = {"rows": [], "nearest": {}, "observed": {}, "ack_first": None}
    if target.is_http and report["era"] == "legacy":
        url = target.server.url  # type: ignore[union-attr]
        if report["transport"] == "sse":
            obs = await probe_sse(url, dict(target.headers), target.timeout)
            dialect["rows"] = match(obs, sse=True)
            dialect["nearest"] = nearest(obs, sse=True)
        else:
            obs = await probe_streamable(
                url, dict(target.headers), target.timeout, report["protocol_version"]
            )
            dialect["rows"] = match(obs, sse=False)
            dialect["nearest"] = nearest(obs, sse=False)
            dialect["ack_first"] = obs.ack_first
        dialect["observed"] = describe(obs)
    elif not target.is_http:
        early = await probe_stdio_early(target.server, target.timeout)  # type: ignore[arg-type]
        dialect["early"] = early
        dialect["rows"] = [early["row"]] if early["row"] else []
    else:
        dialect["note"] = (
            "no sessions to misuse here: only the unknown-method answer above is observable"
            if not target.is_http
            else "modern era: no handshake and no sessions"
        )
    report["dialect"] = dialect
    return report


def _print(report: dict[str, Any]) -> None:
    out = render.out
    info = report.get("server_info") or {}
    out.print(f"[bold]{report['target']}[/bold]")
    out.print(f"  era              {report['era']}")
    out.print(f"  transport        {report['transport']}")
    out.print(f"  protocol version {report['protocol_version']}")
    out.print(f"  server           {info.get('name')} {info.get('version', '')}")
    caps = sorted((report.get("capabilities") or {}).keys())
    out.print(f"  capabilities     {', '.join(caps) or '-'}")
    out.print(f"  connected in     {report['connect_seconds'] * 1000:.0f} ms")
    render.table(
        "Detection steps",
        ["at (ms)", "event", "details"],
        [
            [
                f"{s['at'] * 1000:.1f}",
                s["event"],
                " ".join(f"{k}={v}" for k, v in s.items() if k not in ("at", "event")),
            ]
            for s in report["detection"]
        ],
    )
    unknown = report["unknown_method"]
    out.print(f"  unknown method   {unknown['answered']} {unknown.get('code', '')}")
    dialect = report["dialect"]
    if dialect["observed"]:
        render.table(
            "Dialect probes",
            ["step", "status", "answer", "ms"],
            [
                [
                    a["step"],
                    a["status"],
                    (
                        f"{a['rpc_error']['code']} {a['rpc_error']['message']}"
                        if a["rpc_error"]
                        else "result"
                        if a["result"]
                        else (a["body"] or a["error"] or "")
                    ),
                    f"{a['seconds'] * 1000:.1f}",
                ]
                for a in dialect["observed"].values()
            ],
        )
        ack = dialect["ack_first"]
        out.print(
            "  initialized's 202 "
            + (
                "before processing (a request right after it was refused)"
                if ack
                else "not observed to come first"
            )
        )
    if "early" in dialect:
        early = dialect["early"]
        out.print(
            f"  early tools/list {early['answer']} {early.get('code', '')} "
            f"{early.get('message', '')}".rstrip()
        )
    rows = dialect["rows"]
    if rows:
        out.print("  dialect row      " + ", ".join(rows))
    elif dialect["nearest"]:
        out.print(
            "  dialect row      none exactly; nearest: "
            + "; ".join(
                f"{name} (differs in {', '.join(miss)})"
                for name, miss in dialect["nearest"].items()
            )
        )
    else:
        out.print("  dialect row      " + dialect.get("note", "no row matches"))


@click.command()
@click.argument("url", required=False)
@json_flag
@target_options
def probe(url: str | None, as_json: bool, **params: Any) -> int:
    """Era, transport, version, capabilities, detection steps and the server's dialect.

    Sends only ping, list methods, an unknown method and invalid session ids: never a
    tool call.
    """
    target = make_target(params, url)
    try:
        report = anyio.run(_probe, target)
    except MCPError as exc:
        render.report_error(exc, as_json=as_json)
        return int(exit_code(exc))
    if as_json:
        render.emit_json({"ok": True, **report})
    else:
        _print(report)
    return Exit.OK
