#!/usr/bin/env bash
# Installs the test suite's outside peers that come from package registries: the reference
# Python MCP SDK (PyPI `mcp`) in target/mcp-venv, and npm's MCP everything server in
# target/npm-peers. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/mcp-venv/bin/python ] || ! target/mcp-venv/bin/python -c "import mcp.server.mcpserver" 2>/dev/null; then
  python3 -m venv target/mcp-venv
  target/mcp-venv/bin/pip install --quiet --disable-pip-version-check "mcp==2.3.0" "uvicorn>=0.30"
fi
everything="target/npm-peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
if [ ! -f "$everything" ]; then
  mkdir -p target/npm-peers
  npm install --prefix target/npm-peers --silent --no-audit --no-fund \
    "@modelcontextprotocol/server-everything@2026.8.31"
fi
echo "MCP test peers ready: target/mcp-venv/bin/python, $everything"
