#!/usr/bin/env bash
# Installs the pgvector extension into the local PostgreSQL on Debian 12.
#
# pgvector is not in Debian 12's archive, so this builds Debian's own `pgvector`
# source package (0.8.0, from the `trixie` suite) against the installed server's
# dev headers. It is idempotent: when the extension is already installed it exits.
set -euo pipefail

pg_major="${PG_MAJOR:-$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)}"
if [ -z "$pg_major" ]; then
  echo "install-pgvector: no PostgreSQL cluster found under /etc/postgresql" >&2
  exit 1
fi
ext_dir="/usr/share/postgresql/${pg_major}/extension"
if [ -f "${ext_dir}/vector.control" ]; then
  echo "install-pgvector: pgvector already installed for PostgreSQL ${pg_major}"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
src_list=/etc/apt/sources.list.d/switchyard-trixie-src.sources
if [ ! -f "$src_list" ]; then
  cat >"$src_list" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-${pg_major}" build-essential dpkg-dev >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq --download-only pgvector/trixie >/dev/null 2>&1 || apt-get source -qq --download-only pgvector >/dev/null
dsc="$(ls ./*.dsc | head -1)"
dpkg-source --no-check -x "$dsc" src >/dev/null
cd src
make -s PG_CONFIG="/usr/lib/postgresql/${pg_major}/bin/pg_config" >/dev/null
make -s PG_CONFIG="/usr/lib/postgresql/${pg_major}/bin/pg_config" install >/dev/null
echo "install-pgvector: installed pgvector $(grep default_version "${ext_dir}/vector.control" | cut -d"'" -f2) for PostgreSQL ${pg_major}"
