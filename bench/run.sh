#!/usr/bin/env bash
# The hfasgi overhead benchmark: the reference app next to a direct call and a bare pure-ASGI
# aiohttp proxy (the Python floor), all in the same run, with the harness in ../shared/bench.
#   bench/run.sh              3 runs (~12 min)
#   bench/run.sh --quick      1 short run (~2 min)
#   bench/run.sh --auth       the same with a key and a request limit (memory store) on every request
# Extra arguments go to the harness (see ../shared/bench/README.md), e.g. --anchors direct,asgi-aiohttp,asgi
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
harness="$here/../../shared/bench/run.sh"
[ -x "$harness" ] || { echo "bench: the harness is expected at $harness (shared/ beside the project)" >&2; exit 2; }
mkdir -p "$here/results"
out="$here/results/$(date +%Y%m%d-%H%M%S).md"
anchors=direct,asgi-aiohttp
name=hfasgi key=
args=()
for a in "$@"; do
  case "$a" in
    --anchors|--anchors=*) anchors= ; args+=("$a") ;;
    --auth) name=hfasgi+auth key={key} ;;
    *) args+=("$a") ;;
  esac
done
"$harness" --name "$name" ${anchors:+--anchors "$anchors"} --out "$out" \
  --proxy "bash $here/serve.sh {upstream} 9100 $key" "${args[@]}"
echo "bench: summary written to $out" >&2
