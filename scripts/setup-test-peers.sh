#!/usr/bin/env bash
# Installs the test suite's outside peers that come from package registries: the reference
# Python MCP SDK (PyPI `mcp`) in target/mcp-venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/mcp-venv/bin/python ] || ! target/mcp-venv/bin/python -c "import mcp.server.mcpserver" 2>/dev/null; then
  python3 -m venv target/mcp-venv
  target/mcp-venv/bin/pip install --quiet --disable-pip-version-check "mcp==2.3.0" "uvicorn>=0.30"
fi
echo "MCP test peer ready: target/mcp-venv/bin/python"
