"""A legacy SSE session whose stream is cut mid-run, against the real mcp 1.26 server.

The cut happens between the server and the client (as a proxy or a flaky network
would do it): the client's view of the GET stream breaks while 100 calls are queued and
in flight. The issue's bar: a new endpoint (a new session), one new handshake, and
every read succeeding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

import resilient_mcp

from .fixtures import PeerPool

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

CALLS = 100
CUT_AFTER = 30  # answers received before the stream is cut


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _CuttableStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, cut: anyio.Event) -> None:
        self._inner = inner
        self._cut = cut

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if self._cut.is_set():
                raise httpx.ReadError("stream cut by the test")
            yield chunk
            if self._cut.is_set():
                raise httpx.ReadError("stream cut by the test")

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CuttingTransport(httpx.AsyncBaseTransport):
    """Passes everything through; the first GET stream breaks once ``cut`` is set."""

    def __init__(self, cut: anyio.Event) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._cut = cut
        self.streams = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "GET":
            self.streams += 1
            if self.streams == 1:
                assert isinstance(response.stream, httpx.AsyncByteStream)
                response.stream = _CuttableStream(response.stream, self._cut)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_cut_sse_stream_mid_run_new_endpoint_one_handshake_all_reads(
    peer_pool: PeerPool,
) -> None:
    peer = peer_pool.get("mcp126", "sse")
    cut = anyio.Event()
    answered = 0
    texts: dict[int, str] = {}

    async def read(i: int) -> None:
        nonlocal answered
        result = await client.call_tool("echo", {"text": f"r{i}"}, idempotent=True)
        texts[i] = result.text
        answered += 1
        if answered == CUT_AFTER:
            cut.set()
            # The next chunk on the stream (any answer) finds it cut; the ping makes
            # sure one comes even if every other answer is already in.
            tg.start_soon(client.ping)

    transport = _CuttingTransport(cut)
    with anyio.fail_after(30):
        async with (
            httpx.AsyncClient(transport=transport) as http,
            resilient_mcp.connect(
                resilient_mcp.HTTPServer(peer.url, http_client=http, transport="sse")
            ) as client,
        ):
            first_session = client.session_id
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(read, i)
            assert texts == {i: f"r{i}" for i in range(CALLS)}
            assert client.session_id != first_session  # a new endpoint: a new session
            assert client.stats.handshakes == 2
            assert client.stats.recoveries == 1
            assert transport.streams == 2
