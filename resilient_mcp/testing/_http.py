"""What every front end shares: counted HTTP answers, the chaos gate, `ServerParts`.

Every HTTP error status a front end sends goes through `HttpReplies`, so
`ServerStats.http_rejections` counts it; every POST passes `ChaosGate` first, so the
seeded dice roll once per POST, in arrival order, whichever front end serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from starlette.types import Receive, Send

from resilient_mcp.testing._asgi import HeaderList, read_body, send_body
from resilient_mcp.testing._chaos import Chaos, Dice, Fate
from resilient_mcp.testing._config import ServerConfig
from resilient_mcp.testing._profiles import HttpAnswer
from resilient_mcp.testing._state import ServerState
from resilient_mcp.testing._stats import ServerStats


class HttpReplies:
    """Sends complete HTTP answers, counting each status >= 400 as a rejection."""

    def __init__(self, stats: ServerStats) -> None:
        self._stats = stats

    def _count(self, status: int) -> None:
        if status >= 400:
            self._stats.http_rejections[status] += 1

    async def answer(self, send: Send, answer: HttpAnswer, headers: HeaderList = ()) -> None:
        """Send `answer` byte for byte, followed by `headers`."""
        self._count(answer.status)
        await send_body(
            send, answer.status, answer.body, content_type=answer.content_type, headers=headers
        )

    async def bare(self, send: Send, status: int, headers: HeaderList = ()) -> None:
        """A status with an empty body and no content type (the modern era's 202/405/406)."""
        self._count(status)
        await send_body(send, status, b"", content_type=None, headers=headers)


class ChaosGate:
    """The first thing every POST meets: its fate from the dice, latency, refusals."""

    def __init__(self, chaos: Chaos, state: ServerState, replies: HttpReplies) -> None:
        self._chaos = chaos
        self._dice = Dice(chaos)
        self._state = state
        self._replies = replies

    async def admit(self, receive: Receive, send: Send) -> Fate | None:
        """Draw this POST's fate, add its latency; None after refusing it (429/503)."""
        self._state.stats.posts += 1
        fate = self._dice.roll()
        if fate.latency > 0:
            await anyio.sleep(fate.latency)  # simulated server work
        if not fate.reject:
            return fate
        await read_body(receive)
        status = self._chaos.reject_status
        self._state.fault(str(status), fate.number)
        extra = []
        if self._chaos.retry_after is not None:
            extra.append((b"retry-after", str(self._chaos.retry_after).encode()))
        text = "Too Many Requests" if status == 429 else "Service Unavailable"
        await self._replies.answer(send, HttpAnswer.text(status, text), extra)
        return None


@dataclass(frozen=True)
class ServerParts:
    """The parts of one server that every front end uses."""

    config: ServerConfig
    state: ServerState
    replies: HttpReplies
    gate: ChaosGate
