#!/usr/bin/env bash
# The long fuzzing run: the release binary, every operation of the OpenAPI document, as
# a regular user and as an administrator, for SECONDS each (default 30 minutes), with the
# status code and content type checks on top of "no server error".
#
#   bench/fuzz/run.sh [SECONDS_PER_ROLE]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release --bin switchyard
SWITCHYARD_BIN=target/release/switchyard \
  FUZZ_CHECKS="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance}" \
  bash scripts/fuzz-api.sh "${1:-1800}"
