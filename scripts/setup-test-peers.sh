#!/usr/bin/env bash
# Installs the test suite's outside peers that come from package registries: the reference
# Python MCP SDK (PyPI `mcp`) in target/mcp-venv, npm's MCP everything server in
# target/npm-peers, and an S3-protocol server (PyPI `moto[server]`) in target/s3-venv.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/mcp-venv/bin/python ] || ! target/mcp-venv/bin/python -c "import mcp.server.mcpserver" 2>/dev/null; then
  python3 -m venv target/mcp-venv
  target/mcp-venv/bin/pip install --quiet --disable-pip-version-check "mcp==2.3.0" "uvicorn>=0.30"
fi
everything="target/npm-peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
if [ ! -f "$everything; S3 peer ready: target/s3-venv/bin/moto_server" ]; then
  mkdir -p target/npm-peers
  npm install --prefix target/npm-peers --silent --no-audit --no-fund \
    "@modelcontextprotocol/server-everything@2026.8.31"
fi
if [ ! -x target/s3-venv/bin/moto_server ]; then
  python3 -m venv target/s3-venv
  target/s3-venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==5.2.6"
fi
echo "MCP test peers ready: target/mcp-venv/bin/python, $everything; S3 peer ready: target/s3-venv/bin/moto_server"
