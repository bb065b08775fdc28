#!/usr/bin/env bash
# What a turn costs as the database grows: new and continuing ChatKit turns against an
# empty database and against a full one (bench/fill: 50,000 threads, 1,000,000 items,
# 500,000 runs by default), on SQLite and on PostgreSQL, with the same fake model, load
# generator and CPU pinning as run.sh (../shared/bench-peer). On PostgreSQL the database
# server's CPU per turn is measured too.
#
#   bench/chatkit/sizes.sh                        # both backends, empty and full
#   BACKENDS=sqlite SIZES=full bench/chatkit/sizes.sh
#   REPS=1 DURATION=5 CONC=16 bench/chatkit/sizes.sh
#   FILL_ARGS="--threads 5000" bench/chatkit/sizes.sh   # a smaller full database
#   FILL_ONLY=1 bench/chatkit/sizes.sh            # prepare and fill the templates only
#
# The filled templates are kept in $OUT (SQLite) and as the PostgreSQL databases
# sy_bench_empty and sy_bench_full, and reused when KEEP=1; every measured window runs on
# a fresh copy of one (a copied folder, or CREATE DATABASE … TEMPLATE).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
PEER="${BENCH_PEER:-$ROOT/../shared/bench-peer}"
VENV="${BENCH_VENV:-$HOME/.venvs/bench}"
REPS="${REPS:-3}"
DURATION="${DURATION:-15}"
CONC="${CONC:-1,16,64}"
OPS="${OPS:-create,continue}"
BACKENDS="${BACKENDS:-sqlite,postgres}"
SIZES="${SIZES:-empty,full}"
PIN="${PIN:---server-cpus 0 --harness-cpus 1}"
OUT="${OUT:-$ROOT/target/bench-sizes}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
PGHOST_ARGS=(-h 127.0.0.1 -U postgres)
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$PEER/requirements.txt"
fi
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
  FILL="${FILL_BIN:-$ROOT/target/release/switchyard-fill}"
else
  cargo build --release -q -p server -p fill-bench --bin switchyard --bin switchyard-fill
  BIN="$ROOT/target/release/switchyard"
  FILL="$ROOT/target/release/switchyard-fill"
fi

# shellcheck source=bench/chatkit/prepare.sh
source "$ROOT/bench/chatkit/prepare.sh"

fresh_pg() { dropdb "${PGHOST_ARGS[@]}" --if-exists "$1"; createdb "${PGHOST_ARGS[@]}" ${2:+-T "$2"} "$1"; }

for backend in ${BACKENDS//,/ }; do
  # The empty template, then the full one: a copy, filled.
  if [ "${KEEP:-0}" != 1 ] || [ ! -f "$OUT/$backend-full/api-key" ]; then
    if [ "$backend" = postgres ]; then
      fresh_pg sy_bench_empty
      prepare "$OUT/$backend-empty" "$PG/sy_bench_empty"
      fresh_pg sy_bench_full sy_bench_empty
      rm -rf "$OUT/$backend-full" && cp -r "$OUT/$backend-empty" "$OUT/$backend-full"
      "$FILL" --data-dir "$OUT/$backend-full" --database-url "$PG/sy_bench_full" ${FILL_ARGS:-} | tee "$OUT/$backend-fill.json"
      psql "${PGHOST_ARGS[@]}" -d sy_bench_full -qc 'VACUUM ANALYZE'
    else
      prepare "$OUT/$backend-empty"
      rm -rf "$OUT/$backend-full" && cp -r "$OUT/$backend-empty" "$OUT/$backend-full"
      "$FILL" --data-dir "$OUT/$backend-full" ${FILL_ARGS:-} | tee "$OUT/$backend-fill.json"
    fi
  fi
  if [ "${FILL_ONLY:-0}" = 1 ]; then continue; fi
  for size in ${SIZES//,/ }; do
    template="$OUT/$backend-$size"
    key=$(cat "$template/api-key")
    if [ "$backend" = postgres ]; then
      # Every window on a fresh copy of the database; the folder holds only the keys.
      cmd="dropdb -h 127.0.0.1 -U postgres --if-exists sy_bench_run && createdb -h 127.0.0.1 -U postgres -T sy_bench_$size sy_bench_run && SWITCHYARD_DATA_DIR='$template' SWITCHYARD_DATABASE_URL='$PG/sy_bench_run' SWITCHYARD_LOG_LEVEL=warn exec '$BIN' --bind 127.0.0.1:{port}"
      extra=(--db-cpu)
    else
      cmd="rm -rf '$OUT/run' && cp -r '$template' '$OUT/run' && SWITCHYARD_DATA_DIR='$OUT/run' SWITCHYARD_LOG_LEVEL=warn exec '$BIN' --bind 127.0.0.1:{port}"
      extra=()
    fi
    for op in ${OPS//,/ }; do
      # shellcheck disable=SC2086
      "$VENV/bin/python" "$ROOT/bench/chatkit/turns.py" --out "$OUT/$backend-$size-$op" --reps "$REPS" -c "$CONC" \
        --duration "$DURATION" --warmup 2 $PIN --label "switchyard $backend $size" --op "$op" "${extra[@]}" \
        --server-cmd "$cmd" --path /api/chatkit --auth "Bearer $key" --health-path /health
    done
  done
done
rm -rf "$OUT/run"
if [ "${FILL_ONLY:-0}" = 1 ]; then exit 0; fi
# One row per backend, size and kind of turn (each named by its file).
"$VENV/bin/python" "$PEER/report.py" "$OUT"/*-*-*.jsonl | tee "$OUT/report.md"
