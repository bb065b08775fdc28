# Sourced by run.sh and sizes.sh: `prepare DIR [DATABASE_URL]` readies a data folder (and
# database) for the ChatKit benchmarks: an administrator, the fake model as default model,
# generated titles off (the peer makes none), a published agent workflow served by
# ChatKit, and an API key for the load, written to DIR/api-key. Needs BIN and OUT.
prepare() {
  local dir="$1" url="${2:-}" port=18790
  rm -rf "$dir" && mkdir -p "$dir"
  env SWITCHYARD_DATA_DIR="$dir" SWITCHYARD_LOG_LEVEL=warn ${url:+SWITCHYARD_DATABASE_URL=$url} \
    SWITCHYARD_ADMIN_EMAIL=bench@example.com SWITCHYARD_ADMIN_PASSWORD=bench-password \
    OPENAI_API_KEY=fake OPENAI_BASE_URL=http://127.0.0.1:9100/v1 \
    "$BIN" --bind "127.0.0.1:$port" > "$OUT/prepare.log" 2>&1 &
  local server=$!
  trap "kill $server 2>/dev/null || true" EXIT
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.5; done
  api() { curl -sf "http://127.0.0.1:$port$1" -H 'content-type: application/json' ${TOKEN:+-H "authorization: Bearer $TOKEN"} "${@:2}"; }
  json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
  local TOKEN provider workflow
  TOKEN=$(api /api/auth/login -d '{"email": "bench@example.com", "password": "bench-password"}' | json '["access_token"]')
  provider=$(api /api/admin/model-providers | json '[0]["id"]')
  api /api/admin/models -d "{\"provider_id\": $provider, \"name\": \"fake-model\", \"is_default\": true}" > /dev/null
  api /api/admin/settings -X PATCH -d '{"thread_titles": false}' > /dev/null
  workflow=$(api /api/workflows -d '{"display_name": "Bench", "publish": true, "graph": {"nodes": [{"slug": "start", "kind": "start"}, {"slug": "agent", "kind": "agent", "parameters": {"instructions": "Answer."}}], "edges": [{"source": "start", "target": "agent"}]}}' | json '["workflow"]["id"]')
  api /api/workflows/chatkit -d "{\"workflow_id\": $workflow}" > /dev/null
  api /api/admin/api-keys -d '{"name": "bench"}' | json '["secret"]' > "$dir/api-key"
  kill $server; wait $server 2>/dev/null || true
  trap - EXIT
}
