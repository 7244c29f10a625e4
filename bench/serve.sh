#!/usr/bin/env bash
# Start the reference app for the benchmark harness: serve.sh UPSTREAM_URL PORT
# Chat goes to the upstream's /v1/chat/completions (router kind); the harness's task model is listed
# on a serverless-kind upstream at the same URL, so the HF task API is measured too.
set -euo pipefail
upstream=$1 port=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin="$root/.venv/bin/hfasgi"; [ -x "$bin" ] || bin=hfasgi
catalog=$(mktemp --suffix=.toml)
cat > "$catalog" <<TOML
[upstreams.legacy]
kind = "serverless"
url = "$upstream"

[[models]]
id = "meta-llama/Llama-3.1-8B-Instruct"
upstream = "legacy"
task = "text-generation"
TOML
export HFASGI_UPSTREAM_URL="$upstream" HFASGI_UPSTREAM_KIND=router HFASGI_MODELS="$catalog" HF_TOKEN=hf_bench_server_token
exec "$bin" serve --host 127.0.0.1 --port "$port" --log-level warning
