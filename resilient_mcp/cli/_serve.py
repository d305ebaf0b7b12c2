"""``serve-fault``: our strict, fault-injecting server from the shell, until Ctrl-C."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import click

from . import _render as render
from ._exit import Exit


@click.command("serve-fault")
@click.option(
    "--profile",
    default="python-sdk-2",
    show_default=True,
    help="The real server's dialect to reproduce (see docs/testing.md).",
)
@click.option(
    "--era", type=click.Choice(["legacy", "modern", "dual"]), default="legacy", show_default=True
)
@click.option(
    "--transport",
    type=click.Choice(["streamable-http", "sse"]),
    default="streamable-http",
    show_default=True,
    help="sse: the legacy HTTP+SSE transport (the python-sdk-sse profile).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: any free port."
)
@click.option("--seed", type=int, help="Seed of the chaos (default: random).")
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Probability a POST is refused 503 + Retry-After.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Probability a tools/call response is cut.",
)
@click.option(
    "--expire-every", type=click.IntRange(min=1), help="A session is gone after this many requests."
)
@click.option("--latency", type=float, default=0.0, help="Up to this many seconds per POST.")
@click.option(
    "--handshake-delay", type=float, default=0.0, help="Seconds before `initialized` is processed."
)
def serve_fault(
    profile: str,
    era: str,
    transport: str,
    port: int,
    seed: int | None,
    fail_rate: float,
    drop_rate: float,
    expire_every: int | None,
    latency: float,
    handshake_delay: float,
) -> int:
    """Run the fault server on 127.0.0.1, print its URL, stop on Ctrl-C."""
    try:
        import uvicorn

        from resilient_mcp.testing import PROFILES, Chaos, StrictServer
        from resilient_mcp.testing._serve import _Uvicorn
        from resilient_mcp.testing._server import host_of
    except ImportError:
        render.err.print("serve-fault needs: pip install 'resilient-mcp[cli,testing]'")
        return Exit.USAGE
    if transport == "sse":
        profile = "python-sdk-sse"
    if profile not in PROFILES:
        raise click.BadParameter(f"expected one of {', '.join(PROFILES)}", param_hint="--profile")
    try:
        chaos = Chaos(
            seed=seed,
            reject_rate=fail_rate,
            drop_rate=drop_rate,
            expire_after_requests=expire_every,
            latency=(0.0, latency),
        )
        server = StrictServer(
            # click.Choice and the PROFILES check above narrowed both strings.
            profile=profile,
            era=era,  # type: ignore[arg-type]
            chaos=chaos,
            handshake_delay=handshake_delay,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise click.UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    hosting = host_of(server)
    hosting.claim()
    config = uvicorn.Config(
        server.asgi_app(),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    runner = _Uvicorn(config, hosting.shutdown)

    async def main() -> None:
        import threading

        loop = asyncio.get_running_loop()
        hosting.attach_loop(threading.get_ident(), loop.call_soon_threadsafe)
        try:
            await runner.serve(sockets=[sock])
        finally:
            hosting.attach_loop(None, None)

    # The URL line is what scripts (and our tests) wait for: flush it at once.
    print(f"http://127.0.0.1:{bound}{server.endpoint_path}", flush=True)
    info: dict[str, Any] = {"profile": profile, "era": era}
    print(f"serving {info} until Ctrl-C", file=sys.stderr, flush=True)
    try:
        asyncio.run(main())  # uvicorn turns SIGINT/SIGTERM into a graceful stop
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        hosting.release()
    return Exit.OK
