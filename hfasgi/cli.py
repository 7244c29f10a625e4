"""``hfasgi serve``: run the reference gateway with uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hfasgi import __version__
from hfasgi.settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfasgi", description="A Hugging Face-compatible inference gateway.")
    parser.add_argument("--version", action="version", version=f"hfasgi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the reference gateway (settings: see hfasgi.settings)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--config", metavar="FILE", help="a TOML settings file (environment variables override it)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hfasgi`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(args.config, host=args.host, port=args.port)
    except ValueError as exc:
        print(f"hfasgi: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print("hfasgi: `serve` needs uvicorn: pip install 'hfasgi[server]'", file=sys.stderr)
        return 2
    from hfasgi.app import create_app

    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"hfasgi: invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(
        f"hfasgi {__version__}: forwarding to {settings.upstream_kind} upstream {settings.upstream_url} "
        f"on http://{settings.host}:{settings.port}",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        server_header=False,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
