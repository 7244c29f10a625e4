"""The ``hfasgi`` command: ``hfasgi serve`` runs the reference gateway (uvicorn), ``hfasgi keys`` manages API keys,
``hfasgi local`` builds a model folder for ``hfasgi serve --local-model DIR``."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from typing import Any

from hfasgi import __version__
from hfasgi.settings import ENVIRONMENT, Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from hfasgi import keys_cli
    from hfasgi.local import commands as local_commands

    parser = argparse.ArgumentParser(prog="hfasgi", description="A Hugging Face-compatible inference gateway.")
    parser.add_argument("--version", action="version", version=f"hfasgi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the reference gateway (settings: see hfasgi.settings)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--config", metavar="FILE", help="a TOML settings file (environment variables override it)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs CPU)")
    serve.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help=f"serve without authentication: anyone who reaches it spends its token (${ENVIRONMENT['no_auth']}=1)",
    )
    serve.add_argument(
        "--ssl-certfile",
        metavar="FILE",
        help=f"serve HTTPS with this PEM certificate chain (${ENVIRONMENT['ssl_certfile']})",
    )
    serve.add_argument(
        "--ssl-keyfile", metavar="FILE", help=f"the private key (PEM) of --ssl-certfile (${ENVIRONMENT['ssl_keyfile']})"
    )
    serve.add_argument(
        "--local-model",
        metavar="PATH_OR_ID",
        help="run this model folder (or cached Hub id) with `transformers serve` and forward to it; needs "
        f"hfasgi[local] and no Hugging Face token (${ENVIRONMENT['local_model']})",
    )
    serve.add_argument(
        "--local-start-timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long the local model may take to answer at start-up (${ENVIRONMENT['local_start_timeout']})",
    )
    keys_cli.add_parser(commands)
    local_commands.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hfasgi`` console script; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed what it had to say
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command == "keys":
        from hfasgi import keys_cli

        return keys_cli.run(args)
    if args.command == "local":
        from hfasgi.local import commands as local_commands

        return local_commands.run(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(
            args.config,
            host=args.host,
            port=args.port,
            no_auth=args.no_auth,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            local_model=args.local_model,
            local_start_timeout=args.local_start_timeout,
        )
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
    scheme = "https" if settings.ssl_certfile else "http"
    address = f"{scheme}://{settings.host}:{settings.port}"
    print(f"hfasgi {__version__}: {_upstream_line(settings)} on {address}", file=sys.stderr)
    if settings.no_auth:
        spends = "use its local model" if _local_only(settings) else "use its Hugging Face token"
        print(
            f"hfasgi: WARNING: authentication is off (--no-auth): anyone who can reach {address} can {spends}",
            file=sys.stderr,
        )
    else:
        print(f"hfasgi: authentication: {_auth_sources(settings)}", file=sys.stderr)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        server_header=False,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        log_config=_log_config(args.log_level) if settings.local_model else uvicorn.config.LOGGING_CONFIG,
    )
    return 0


def _local_only(settings: Settings) -> bool:
    from hfasgi.local.wiring import local_only

    return bool(settings.local_model) and local_only(settings)


def _upstream_line(settings: Settings) -> str:
    """What the gateway forwards to, for the start-up line."""
    upstream = f"forwarding to {settings.upstream_kind} upstream {settings.upstream_url}"
    if not settings.local_model:
        return upstream
    from hfasgi.local.wiring import local_model_id

    model = settings.local_model
    local = f"running local model {local_model_id(model)!r} ({model}) with transformers serve"
    return local if _local_only(settings) else f"{upstream}, and {local}"


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the ``hfasgi.local`` logger (the local model's own output) on its console handler."""
    import uvicorn.config

    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["hfasgi.local"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _auth_sources(settings: Settings) -> str:
    """Where callers' credentials are checked, for the start-up line (never a key, never the Redis URL)."""
    sources = []
    if settings.api_keys:
        count = sum(1 for item in settings.api_keys.split(",") if item.strip())
        sources.append(f"{count} key{'s' if count != 1 else ''} from {ENVIRONMENT['api_keys']}")
    if settings.api_keys_file:
        sources.append(f"key file {settings.api_keys_file}")
    if settings.key_store == "redis":
        sources.append("Redis key store")
    if settings.jwt_jwks_file:
        sources.append(f"JWTs signed by a key of {settings.jwt_jwks_file}")
    return ", ".join(sources) or "none configured"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
