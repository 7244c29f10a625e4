"""Instructions per proxied request, counted by callgrind: a measure the machine's load cannot move.

    bench/instructions.sh          # the floor (a bare aiohttp proxy) and the reference app's variants
    bench/instructions.sh --only hfasgi,hfasgi+auth+limit

Variants: ``hfasgi-unvalidated`` (``--no-auth``, ``HFASGI_VALIDATE=0``), ``hfasgi`` (``--no-auth``, bodies
validated), ``hfasgi+auth`` (a key, no limit), ``hfasgi+auth+limit`` (a key and a
request limit, memory store),
``hfasgi+auth+limit+tokens`` (plus a token limit: reservation and usage probe) and
``hfasgi+auth+redis-limit`` (the request limit in Redis; Redis's own work is not counted).

Each proxy runs under ``valgrind --tool=callgrind`` in front of a static nginx upstream and serves N
chat requests, one at a time (so no exchange lasts long enough for valgrind's slowness to change
what the code does); the difference between two values of N, divided by their difference, is the
cost of one request, startup excluded. This file is the client and the driver (stdlib only).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
BODY = (SHARED / "conf" / "chat_request.json").read_bytes()
PORT = 9360


def drive(port: int, n: int) -> None:
    """Wait for the proxy, then send ``n`` chat requests over one keep-alive connection."""
    deadline = time.monotonic() + 300
    conn = None
    while conn is None:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            probe.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json"})
            if probe.getresponse().read() and time.monotonic() < deadline:
                conn = probe
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", BODY, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"proxy answered {response.status}")
    conn.close()


def count(name: str, command: list[str], env: dict[str, str], n: int, workdir: Path) -> int:
    """Total instructions of ``command`` serving ``n`` requests (+1 probe)."""
    out = workdir / f"callgrind.{name}.{n}"
    log = workdir / f"callgrind.{name}.{n}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        drive(PORT, n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    found = re.search(r"Collected : (\d+)", log.read_text())
    if not found:
        raise RuntimeError(f"no callgrind total in {log}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", default="http://127.0.0.1:9301", help="a fast chat upstream (nginx)")
    parser.add_argument("--requests", type=int, nargs=2, default=(100, 500), metavar=("FEW", "MANY"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hfasgi-instructions"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the redis-limit variant")
    parser.add_argument("--only", help="comma-separated variants to count (the floor is always counted)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench_python = "/tmp/bench/venv/bin/python"
    hfasgi = [str(ROOT / ".venv" / "bin" / "hfasgi"), "serve", "--port", str(PORT), "--log-level", "warning"]
    base = {"HFASGI_UPSTREAM_URL": args.upstream, "HFASGI_UPSTREAM_KIND": "router", "HF_TOKEN": "hf_bench"}
    proxies = {
        "aiohttp-floor": (
            [bench_python, "-m", "uvicorn", "asgi_proxy_aiohttp:app", "--app-dir", str(SHARED), "--port", str(PORT),
             "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
            {"UPSTREAM_URL": args.upstream},
        ),
        "hfasgi-unvalidated": (
            [*hfasgi, "--no-auth"],
            {**base, "HFASGI_VALIDATE": "0"},
        ),
        "hfasgi": (
            [*hfasgi, "--no-auth"],
            base,
        ),
        "hfasgi+auth": (
            hfasgi,
            {**base, "HFASGI_API_KEYS": "sk-bench"},
        ),
        "hfasgi+auth+limit": (
            hfasgi,
            {**base, "HFASGI_API_KEYS": "sk-bench", "HFASGI_RATE_LIMIT": "100000000/minute"},
        ),
        "hfasgi+auth+limit+tokens": (
            hfasgi,
            {**base, "HFASGI_API_KEYS": "sk-bench", "HFASGI_RATE_LIMIT": "100000000/minute",
             "HFASGI_TOKEN_LIMIT": "100000000000/minute"},
        ),
        "hfasgi+auth+redis-limit": (
            hfasgi,
            {**base, "HFASGI_API_KEYS": "sk-bench", "HFASGI_RATE_LIMIT": "100000000/minute",
             "HFASGI_REDIS_URL": args.redis},
        ),
    }  # fmt: skip
    few, many = args.requests
    per_request = {}
    chosen = set(args.only.split(",")) | {"aiohttp-floor"} if args.only else set(proxies)
    for name, (command, env) in proxies.items():
        if name not in chosen:
            continue
        total_few = count(name, command, env, few, args.workdir)
        total_many = count(name, command, env, many, args.workdir)
        per_request[name] = (total_many - total_few) / (many - few)
    floor = per_request["aiohttp-floor"]
    plain = per_request.get("hfasgi")
    print("| proxy | instructions per request | vs floor | added to plain hfasgi |")
    print("| --- | --- | --- | --- |")
    for name, value in per_request.items():
        added = f"{value - plain:+,.0f}" if plain is not None and name != "hfasgi" and name.startswith("hfasgi") else ""
        print(f"| {name} | {value:,.0f} | {value / floor:.2f}x | {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
