#!/usr/bin/env bash
# Fuzzes every operation of the OpenAPI document with schemathesis (from PyPI), on
# loopback only, once as an administrator and once as a regular user, against a fresh
# server on a temporary SQLite database. Fails on any 5xx answer, and on a server log
# that shows a panic or a secret.
#
#   scripts/fuzz-api.sh [SECONDS_PER_ROLE]     (default 150; CI runs it bounded)
#
# SWITCHYARD_BIN names the binary to fuzz (default target/debug/switchyard, built when
# missing); FUZZ_VENV the Python environment for schemathesis (default target/fuzz-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-150}"
bin="${SWITCHYARD_BIN:-target/debug/switchyard}"
venv="${FUZZ_VENV:-target/fuzz-venv}"
schemathesis_version="4.32.5"

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$schemathesis_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
if [ ! -x "$bin" ]; then
  cargo build -q --bin switchyard
fi

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
admin_password="fuzz-admin-password-$$"
user_password="fuzz-user-password-$$"
# Stdio MCP servers would let generated input name commands to run; the fuzzer gets none.
SWITCHYARD_DATA_DIR="$work/data" SWITCHYARD_BIND="127.0.0.1:$port" \
  SWITCHYARD_ADMIN_EMAIL=admin@example.com SWITCHYARD_ADMIN_PASSWORD="$admin_password" \
  SWITCHYARD_MCP__ALLOW_STDIO=false SWITCHYARD_LOG_LEVEL=info \
  "$bin" > "$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -sf "$base/health" > /dev/null && break; sleep 1; done

login() {
  curl -sf "$base/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"$1\", \"password\": \"$2\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
admin_token="$(login admin@example.com "$admin_password")"
curl -sf "$base/api/users" -H "authorization: Bearer $admin_token" -H 'content-type: application/json' \
  -d "{\"email\": \"user@example.com\", \"password\": \"$user_password\"}" > /dev/null
user_token="$(login user@example.com "$user_password")"

status=0
for role in user admin; do
  if [ "$role" = admin ]; then token="$admin_token"; else token="$user_token"; fi
  echo "== schemathesis as the $role, for ${seconds}s"
  # The run must not change the passwords of the users it runs as, nor remove them, so
  # those two operations are left out (their checks have tests of their own).
  if ! "$venv/bin/schemathesis" run "$base/api/openapi.json" \
      --checks "${FUZZ_CHECKS:-not_a_server_error}" \
      --header "Authorization: Bearer $token" \
      --max-time "$seconds" \
      --workers 2 \
      --request-timeout 30 \
      --generation-database none \
      --exclude-path-regex '^/api/users/(me/password|\{id\})$' \
      --no-color \
      --report junit --report-dir "target/fuzz-report/$role" \
      > "target/fuzz-$role.log" 2>&1; then
    status=1
  fi
  tail -n 25 "target/fuzz-$role.log"
done

# The server's log: no panic, no secret.
if grep -n "panicked" "$work/server.log"; then
  echo "fuzz: the server panicked (above)"; status=1
fi
for secret in "$admin_password" "$user_password" "$admin_token" "$user_token"; do
  if grep -qF "$secret" "$work/server.log"; then
    echo "fuzz: a secret appears in the server's log"; status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "fuzz: failures found (target/fuzz-*.log, target/fuzz-report/)"
  exit 1
fi
echo "fuzz: no server error as the user or the administrator"
