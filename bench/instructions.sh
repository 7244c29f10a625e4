#!/usr/bin/env bash
# Instructions per proxied request under callgrind: the floor (a bare aiohttp proxy) and the reference app.
# Needs valgrind and the harness's set-up (../shared/bench/setup.sh: nginx, /tmp/bench/venv). ~4 min.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared="$here/../../shared/bench"
"$shared/setup.sh" >/dev/null
work=/tmp/hfasgi-instructions; mkdir -p "$work"
chat=$(python3 -c "import json,sys;print(json.dumps(json.load(open(sys.argv[1])),separators=(',',':')))" "$shared/conf/chat_response.json")
task=$(python3 -c "import json,sys;print(json.dumps(json.load(open(sys.argv[1])),separators=(',',':')))" "$shared/conf/task_response.json")
sed -e "s#@@WORKDIR@@#$work#g" -e "s#@@PORT@@#9361#g" -e "s#@@CHAT_JSON@@#$chat#" -e "s#@@TASK_JSON@@#$task#" \
  "$shared/conf/nginx_upstream.conf" > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf" & nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null || true' EXIT
sleep 0.5
python3 "$here/instructions.py" --upstream http://127.0.0.1:9361 "$@"
