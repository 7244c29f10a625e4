#!/usr/bin/env bash
# Start the reference app for the benchmark harness: serve.sh UPSTREAM_URL PORT [KEY]
# Chat goes to the upstream's /v1/chat/completions (router kind); the harness's task model is listed
# on a serverless-kind upstream at the same URL, so the HF task API is measured too.
# With KEY (the harness's {key}), the gateway authenticates it and applies a request limit high
# enough never to refuse (HFASGI_BENCH_LIMITS adds more settings, e.g. "HFASGI_TOKEN_LIMIT=1000000000/minute");
# without KEY it runs --no-auth.
set -euo pipefail
upstream=$1 port=$2 key=${3:-}
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
if [ -n "$key" ]; then
  export HFASGI_API_KEYS="$key" HFASGI_RATE_LIMIT=100000000/minute
  for setting in ${HFASGI_BENCH_LIMITS:-}; do export "${setting?}"; done
  exec "$bin" serve --host 127.0.0.1 --port "$port" --log-level warning
fi
exec "$bin" serve --host 127.0.0.1 --port "$port" --log-level warning --no-auth
