#!/usr/bin/env bash
# The tools the benchmarks need beside the project's .venv, installed only when missing:
#   wrk, jq, GNU time (apt); pgbench (PostgreSQL 15 binaries, like the sandbox); awscli v1.
# Called by `python -m bench`; safe to run twice. apt needs root (as in CI and these sessions).
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v jq >/dev/null 2>&1 || missing+=(jq)
[ -x /usr/bin/time ] || missing+=(time)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
command -v patch >/dev/null 2>&1 || missing+=(patch)

if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/setup.sh: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench/setup.sh: need root for apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x /usr/lib/postgresql/15/bin/pgbench ]; then
  echo "bench/setup.sh: pgbench not found in /usr/lib/postgresql/15/bin (the sandbox's" \
       "PostgreSQL 15 binaries; Debian package postgresql-15 / postgresql-contrib)" >&2
  exit 1
fi

# awscli v1: the one on PATH or pyenv's; otherwise into a private venv under bench/out.
if ! command -v aws >/dev/null 2>&1 && ! ls /root/.pyenv/versions/*/bin/aws >/dev/null 2>&1; then
  here="$(cd "$(dirname "$0")" && pwd)"
  if [ ! -x "$here/out/awscli/bin/aws" ]; then
    echo "bench/setup.sh: installing awscli v1 into bench/out/awscli" >&2
    python3 -m venv "$here/out/awscli"
    "$here/out/awscli/bin/pip" install -q "awscli<2"
  fi
fi
exit 0
