"""An MCP server for the test suite, on the reference Python SDK (`mcp` on PyPI).

    python mcp_server.py stdio
    python mcp_server.py sse PORT
    python mcp_server.py streamable-http PORT

With MCP_TEST_TOKEN set (one token, or several separated by commas), HTTP requests without
`Authorization: Bearer <token>` get 401, and with a wrong token 403. With MCP_TEST_AS set
to an OAuth authorization server's URL, the server publishes it as its protected resource
metadata (`/.well-known/oauth-protected-resource`).
"""

import asyncio
import json
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("switchyard-test-peer")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Returns the text it was given."""
    return text


@server.tool()
async def sleep(seconds: float) -> str:
    """Waits, then says how long it waited."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(message: str) -> str:
    """Always fails with the message."""
    raise ValueError(message)


@server.tool()
def die() -> str:
    """Ends the server process in the middle of the call."""
    os._exit(3)


def guarded(app, token, issuer):
    tokens = [f"Bearer {t}" for t in token.split(",")]

    async def guard(scope, receive, send):
        if scope["type"] == "http" and issuer and scope["path"].startswith("/.well-known/oauth-protected-resource"):
            body = json.dumps({"resource": f"http://127.0.0.1:{scope['server'][1]}/mcp",
                               "authorization_servers": [issuer]}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").decode()
            status = None
            if not given:
                status = 401
            elif given not in tokens:
                status = 403
            if status:
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"error": "auth"}'})
                return
        await app(scope, receive, send)

    return guard


def main():
    transport = sys.argv[1]
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    port = int(sys.argv[2])
    if transport == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app()
    token = os.environ.get("MCP_TEST_TOKEN")
    if token:
        app = guarded(app, token, os.environ.get("MCP_TEST_AS"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
