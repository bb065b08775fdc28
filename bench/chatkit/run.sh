#!/usr/bin/env bash
# ChatKit load benchmark: Switchyard and the seed's Python stack side by side, with the
# same fake model, load generator and CPU pinning (../shared/bench-peer, see its README).
#
#   bench/chatkit/run.sh                 # both servers, 3 reps, c = 1,16,64, 15 s windows
#   REPS=1 DURATION=5 bench/chatkit/run.sh
#   SKIP_PEER=1 OPS=create bench/chatkit/run.sh   # Switchyard only (the peer's last results stay)
#   BENCH_BIN=/path/to/older/switchyard OUT=target/bench-before SKIP_PEER=1 bench/chatkit/run.sh
#                                        # another build (before and after a change)
#   CONTINUE=0 bench/chatkit/run.sh      # without the continuing conversations
#   PRIOR=200 bench/chatkit/run.sh       # continuing conversations 200 turns long
#
# Besides new threads (`create`) and listing (`list`), continuing conversations
# (`continue`: threads.add_user_message on a thread with PRIOR earlier turns, default 3,
# that keeps growing during the window) are measured by bench/chatkit/turns.py.
#
# Switchyard runs from a fresh copy of a prepared data folder for every measured window
# (SQLite; an administrator, the fake model as default model, a published workflow whose
# agent streams from it as the ChatKit default, an API key for the load).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
PEER="${BENCH_PEER:-$ROOT/../shared/bench-peer}"
VENV="${BENCH_VENV:-$HOME/.venvs/bench}"
REPS="${REPS:-3}"
DURATION="${DURATION:-15}"
CONC="${CONC:-1,16,64}"
OPS="${OPS:-create,list}"
PIN="${PIN:---server-cpus 0 --harness-cpus 1}"
OUT="${OUT:-$ROOT/target/bench-chatkit}"
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PEER/requirements.txt"
fi
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --release -q --bin switchyard
  BIN="$ROOT/target/release/switchyard"
fi

# The prepared data folder; the load's API key is kept beside it so a single window can
# be rerun (or profiled) by hand.
TEMPLATE="$OUT/template"
# shellcheck source=bench/chatkit/prepare.sh
source "$ROOT/bench/chatkit/prepare.sh"
prepare "$TEMPLATE"
KEY=$(cat "$TEMPLATE/api-key")
rm "$TEMPLATE/api-key"
echo "$KEY" > "$OUT/api-key"

cd "$PEER"
if [ "${SKIP_PEER:-0}" != 1 ]; then
  # shellcheck disable=SC2086
  "$VENV/bin/python" bench.py --out "$OUT/peer" --reps "$REPS" --ops "$OPS" -c "$CONC" \
    --duration "$DURATION" --warmup 2 $PIN --label peer
fi
# shellcheck disable=SC2086
"$VENV/bin/python" bench.py --out "$OUT/switchyard" --reps "$REPS" --ops "$OPS" -c "$CONC" \
  --duration "$DURATION" --warmup 2 $PIN --label switchyard \
  --server-cmd "d=\$(mktemp -d) && cp -r '$TEMPLATE'/. \"\$d\" && SWITCHYARD_DATA_DIR=\"\$d\" SWITCHYARD_LOG_LEVEL=warn exec '$BIN' --bind 127.0.0.1:{port}" \
  --path /api/chatkit --auth "Bearer $KEY" --health-path /health
PRIOR="${PRIOR:-3}"
if [ "${CONTINUE:-1}" = 1 ]; then
  if [ "${SKIP_PEER:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    "$VENV/bin/python" "$ROOT/bench/chatkit/turns.py" --out "$OUT/peer-continue" --reps "$REPS" -c "$CONC" \
      --duration "$DURATION" --warmup 2 $PIN --label peer --prior-turns "$PRIOR" \
      --server-cmd "exec $VENV/bin/python -m uvicorn peer_chatkit_server:app --host 127.0.0.1 --port {port} --workers 1 --loop uvloop --http httptools --no-access-log --log-level warning" \
      --path /chatkit --health-path /healthz
  fi
  # shellcheck disable=SC2086
  "$VENV/bin/python" "$ROOT/bench/chatkit/turns.py" --out "$OUT/switchyard-continue" --reps "$REPS" -c "$CONC" \
    --duration "$DURATION" --warmup 2 $PIN --label switchyard --prior-turns "$PRIOR" \
    --server-cmd "d=\$(mktemp -d) && cp -r '$TEMPLATE'/. \"\$d\" && SWITCHYARD_DATA_DIR=\"\$d\" SWITCHYARD_LOG_LEVEL=warn exec '$BIN' --bind 127.0.0.1:{port}" \
    --path /api/chatkit --auth "Bearer $KEY" --health-path /health
fi
# The peer's results, when this folder has them.
RESULTS=("$OUT/switchyard.jsonl")
if [ -f "$OUT/peer.jsonl" ]; then RESULTS=("$OUT/peer.jsonl" "${RESULTS[@]}"); fi
if [ -f "$OUT/peer-continue.jsonl" ]; then RESULTS+=("$OUT/peer-continue.jsonl"); fi
if [ -f "$OUT/switchyard-continue.jsonl" ]; then RESULTS+=("$OUT/switchyard-continue.jsonl"); fi
"$VENV/bin/python" report.py "${RESULTS[@]}" | tee "$OUT/report.md"
