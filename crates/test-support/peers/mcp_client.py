"""An MCP client for the test suite, on the reference Python SDK: connects to a streamable
HTTP endpoint with a bearer token, lists the tools and calls one.

    python mcp_client.py URL TOKEN TOOL ARGUMENTS_JSON

Prints one JSON object: {"server": ..., "tools": [...], "result": {...}}.
"""

import asyncio
import json
import sys

from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main():
    url, token, tool, arguments = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                listed = await session.list_tools()
                result = await session.call_tool(tool, arguments)
                print(json.dumps({
                    "server": init.server_info.name,
                    "protocol": init.protocol_version,
                    "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools],
                    "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
                }))


if __name__ == "__main__":
    asyncio.run(main())
