"""The conformance client: resilient-mcp's public API, driven by the official MCP
conformance suite (``@modelcontextprotocol/conformance``; ``make conformance``).

The suite starts a server for one scenario and then this program as
``client.py <server-url>``, with the scenario's name in ``MCP_CONFORMANCE_SCENARIO`` and
what a user would have been given (pre-registered credentials, a signing key) as JSON in
``MCP_CONFORMANCE_CONTEXT``. It does what any application would, the same for every
scenario: connect (with OAuth set up from that configuration), list the tools and call
each of them with arguments made from its input schema, answering elicitations by
accepting the form's defaults. The scenario's name only says which *kind of application*
is configured, where the context alone cannot: the extension suite's machine-to-machine
scenarios give the same `client_id` + `client_secret` as a pre-registered interactive
client, and a real service is configured with `ClientCredentials` by its author.

It prints what it did (never a credential) and exits 1 with the error's type and message
if anything failed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import httpx

import resilient_mcp
from resilient_mcp import auth
from resilient_mcp.types import ElicitRequestParams, ElicitResult, Tool

# The URL of this client's Client ID Metadata Document: where an application publishes
# its metadata, used as its client_id by servers that accept that (SEP-991). The suite's
# authorization servers expect this one; a real application names its own.
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


def accept_defaults(params: ElicitRequestParams) -> ElicitResult:
    """A user who accepts the form as offered: no field filled in, so the client fills
    in the schema's defaults (SEP-1034)."""
    return ElicitResult(action="accept")


def example_arguments(tool: Tool) -> dict[str, Any]:
    """Arguments for ``tool`` made from its input schema: every required property, with
    its default, its first allowed value, or a plain value of its type."""
    schema = tool.inputSchema
    properties: dict[str, Any] = schema.get("properties") or {}
    return {name: _example(properties.get(name) or {}) for name in schema.get("required") or []}


def _example(prop: dict[str, Any]) -> Any:
    if "default" in prop:
        return prop["default"]
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    examples: dict[str, Any] = {
        "string": "conformance",
        "integer": 2,
        "number": 3,
        "boolean": True,
        "array": [],
        "object": {},
    }
    return examples.get(kind) if isinstance(kind, str) else None


# The extension suite's client-credentials scenarios (SEP-1046): a service, no user.
MACHINE_TO_MACHINE = "auth/client-credentials-"


def server_spec(url: str, context: dict[str, Any], scenario: str = "") -> resilient_mcp.HTTPServer:
    """The server as a user would configure it, with the credentials they were given."""
    return resilient_mcp.HTTPServer(url, auth=authorization(context, scenario))


def authorization(context: dict[str, Any], scenario: str = "") -> httpx.Auth:
    """OAuth as an application sets it up: a signing key it was issued means
    ``private_key_jwt`` client credentials; a service (machine to machine) given an id
    and a secret uses the client-credentials grant with them (``client_secret_basic``,
    the default); otherwise the authorization-code flow, as a
    pre-registered client if it was given an id (and maybe a secret), else by its
    metadata document or dynamic registration, whichever the server supports. The
    browser step is headless (the redirect is followed without a browser)."""
    client_id = context.get("client_id")
    if context.get("private_key_pem"):
        return auth.PrivateKeyJWT(
            context["client_id"],
            context["private_key_pem"],
            algorithm=context.get("signing_algorithm", "ES256"),
        )
    if scenario.startswith(MACHINE_TO_MACHINE) and context.get("client_secret"):
        return auth.ClientCredentials(context["client_id"], context["client_secret"])
    return auth.OAuth(
        client_name="resilient-mcp conformance client",
        client_id=client_id,
        client_secret=context.get("client_secret"),
        client_metadata_url=CLIENT_METADATA_URL,
        redirect=auth.HeadlessRedirect(),
    )


async def run(url: str, context: dict[str, Any], scenario: str) -> None:
    handlers = resilient_mcp.Handlers(elicitation=accept_defaults)
    spec = server_spec(url, context, scenario)
    async with resilient_mcp.connect(spec, handlers=handlers) as client:
        info = client.server_info
        print(
            f"connected: {info.name if info else '?'} over {client.transport}, "
            f"protocol {client.protocol_version}"
        )
        tools = await client.list_tools()
        print(f"tools: {[tool.name for tool in tools]}")
        for tool in tools:
            result = await client.call_tool(tool.name, example_arguments(tool))
            print(f"called {tool.name}: {'error' if result.isError else 'ok'}: {result.text!r}")


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: client.py <server-url>", file=sys.stderr)
        return 2
    url = sys.argv[-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    print(f"scenario {scenario or '?'}: {url}")
    try:
        anyio.run(run, url, context, scenario)
    except resilient_mcp.MCPError as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
