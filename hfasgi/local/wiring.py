"""How the reference app brings its own model: the catalog entry, the child ``transformers serve``, the gate.

``hfasgi serve --local-model DIR`` (``HFASGI_LOCAL_MODEL``) makes three small changes, all from here:

* :func:`add_local_model` (called by ``build_catalog``) registers the child as an ``openai`` upstream on a
  free port of 127.0.0.1 and lists its model under the id clients use: the folder's name (``smollm2`` for
  ``./models/smollm2``) or the Hub id as given. It is the default model, so ``"model": "dummy"``, ``"tgi"``
  and the TGI routes reach it too. With no other upstream configured (no models file, the upstream URL and
  kind left at their defaults) the child *is* the default upstream and no Hugging Face token is used or
  needed; unlisted model ids then get a 404 from the gateway. Otherwise the child is an extra upstream
  named ``local`` beside the configured ones.
* :func:`install_local_model` (called by ``create_app``) builds the :class:`~hfasgi.local.process.ManagedProcess`
  and puts a :class:`~hfasgi.local.gate.LocalModelGate` just in front of the forwarder, with the process as
  its shared resource: the lifespan starts the child before the upstream pool is used and stops it at shutdown.
* :func:`child_environment` is the child's environment: ``HF_HUB_OFFLINE=1`` and an ``HF_HOME`` whose
  ``hub/`` folder exists (``transformers serve`` answers ``/v1/models`` with a 500 without it), and none of
  the gateway's secrets (``HF_TOKEN``, ``HFASGI_*``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.local.gate import LocalGateConfig, LocalModelGate
from hfasgi.local.process import ManagedProcess, ProcessConfig
from hfasgi.settings import Settings
from hfasgi.stack import Layer

__all__ = [
    "LOCAL_HOST",
    "LOCAL_TASK",
    "LOCAL_UPSTREAM",
    "add_local_model",
    "child_environment",
    "install_local_model",
    "local_model_id",
    "local_only",
    "local_process",
    "served_model",
    "serve_command",
]

LOCAL_UPSTREAM = "local"
"""The catalog name of the child's upstream when other upstreams are configured (else it is ``default``)."""
LOCAL_HOST = "127.0.0.1"
"""Where the child listens: loopback only, it has no authentication of its own."""
LOCAL_TASK = "text-generation"
"""The task listed for the local model (its chat route works whatever the task)."""
REQUIRED_MODULES = ("torch", "transformers", "fastapi", "uvicorn")
"""What ``transformers serve`` needs: the ``[local]`` extra."""
HEALTH_PROBE_LINE = '"GET /health HTTP/1.1" 200'
"""The child's access line for a passing health probe (the gateway probes every upstream): logged at DEBUG."""
_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")


def local_model_id(model: str) -> str:
    """The id clients use for ``model``: a folder's name, or a Hub id as given."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def served_model(model: str) -> str:
    """What ``transformers serve`` is pinned to (so the ``model`` it accepts): a folder's absolute path, or the id."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def local_only(settings: Settings) -> bool:
    """Whether the local model is the only upstream: no models file, upstream URL and kind left at their defaults."""
    defaults = {f.name: f.default for f in fields(Settings)}
    return (
        settings.models_file is None
        and settings.upstream_url == defaults["upstream_url"]
        and settings.upstream_kind == defaults["upstream_kind"]
    )


def add_local_model(catalog: ModelCatalog, settings: Settings, *, port: int | None = None) -> ModelCatalog:
    """``catalog`` with ``settings.local_model`` served by a child on ``port`` (default: a free one); see above.

    Raises ``ValueError`` when the model's id clashes with a model the catalog already lists elsewhere.
    """
    model = settings.local_model
    if not model:
        return catalog
    if _looks_like_path(model) and not Path(model).expanduser().is_dir():
        raise ValueError(f"local_model (HFASGI_LOCAL_MODEL): there is no model folder at {model!r}")
    model_id, served = local_model_id(model), served_model(model)
    if any(c in served for c in "@:") and Path(served).is_absolute():
        raise ValueError(
            f"local_model (HFASGI_LOCAL_MODEL): transformers serve cannot take a folder path with '@' or ':': {served}"
        )
    alone = local_only(settings)
    name = "default" if alone else LOCAL_UPSTREAM
    if not alone and name in catalog.upstreams:
        raise ValueError(f"local_model (HFASGI_LOCAL_MODEL): the models file already defines an upstream {name!r}")
    existing = catalog.models.get(model_id)
    if existing is not None:
        raise ValueError(
            f"local_model (HFASGI_LOCAL_MODEL): the models file already lists a model {model_id!r} "
            f"(on upstream {existing.upstream!r})"
        )
    upstream = Upstream(
        name=name,
        kind=UpstreamKind.OPENAI,
        url=f"http://{LOCAL_HOST}:{port or _free_port()}",
        timeouts=catalog.default_upstream.timeouts,
    )
    upstreams = [upstream] if alone else [*catalog.upstreams.values(), upstream]
    entry = ModelEntry(id=model_id, upstream=name, upstream_model=served, task=LOCAL_TASK)
    return ModelCatalog(
        upstreams,
        [*catalog.models.values(), entry],
        default_model=catalog.default_model or model_id,
        allow_unlisted=False if alone else catalog.allow_unlisted,
        path=catalog.path,
    )


def serve_command(model: str, port: int) -> tuple[str, ...]:
    """``transformers serve`` pinned to ``model`` on 127.0.0.1:``port``, on the CPU, with this interpreter."""
    cli = (sys.executable, "-m", "transformers.cli.transformers", "serve")
    return (*cli, model, "--host", LOCAL_HOST, "--port", str(port), "--device", "cpu")


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: this one without the gateway's secrets, offline, with an ``HF_HOME/hub`` folder.

    ``HF_HOME`` (or ``HF_HUB_CACHE``) is kept when set, so a Hub id already in the cache is found; its
    ``hub`` folder is created if missing. If it cannot be, a private temporary ``HF_HOME`` is used.
    """
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k not in _SECRETS and not k.startswith("HFASGI_")}
    home = Path(env.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    hub = Path(env["HF_HUB_CACHE"]).expanduser() if env.get("HF_HUB_CACHE") else home / "hub"
    try:
        hub.mkdir(parents=True, exist_ok=True)
    except OSError:
        home = Path(tempfile.mkdtemp(prefix="hfasgi-hf-home-"))
        (home / "hub").mkdir()
        env.pop("HF_HUB_CACHE", None)
    env.update(
        HF_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",  # its log lines reach ours as they are written
    )
    return env


def local_process(settings: Settings, upstream: Upstream, model: str) -> ManagedProcess:
    """The managed ``transformers serve`` for ``model`` behind ``upstream``.

    Raises ``ValueError`` when ``transformers serve`` cannot run here (the ``[local]`` extra is missing).
    """
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"local_model (HFASGI_LOCAL_MODEL) needs {', '.join(missing)} to run `transformers serve`: "
            "pip install 'hfasgi[local]'"
        )
    port = _port_of(upstream)
    config = ProcessConfig(
        argv=serve_command(model, port),
        health_url=f"{upstream.base}/health",
        name=f"local model {local_model_id(settings.local_model or model)!r}",
        env=child_environment(),
        start_timeout=settings.local_start_timeout,
        quiet=(HEALTH_PROBE_LINE,),
    )
    return ManagedProcess(config)


def install_local_model(
    gateway_layers: list[Layer],
    settings: Settings,
    forwarder: ForwarderConfig,
    *,
    process: ManagedProcess | None = None,
) -> list[Layer]:
    """``gateway_layers`` with the local model's gate (and its process, a shared resource) just before the forwarder.

    ``process`` defaults to :func:`local_process` for the catalog's local upstream. A no-op without
    ``settings.local_model``. Raises ``ValueError`` when the catalog does not list the local model
    (``build_catalog`` adds it) or ``transformers serve`` cannot run.
    """
    if not settings.local_model:
        return gateway_layers
    catalog = forwarder.catalog
    model_id = local_model_id(settings.local_model)
    entry = catalog.models.get(model_id)
    if entry is None:
        raise ValueError(f"the catalog does not list the local model {model_id!r}: build it with build_catalog")
    upstream = catalog.upstreams[entry.upstream]
    if process is None:
        process = local_process(settings, upstream, entry.upstream_model or model_id)
    gate = LocalGateConfig(
        process=process,
        upstream=upstream.name,
        catalog=catalog,
        model=model_id,
        routes=forwarder.routes,
        max_body_bytes=forwarder.max_body_bytes,
    )
    index = next((i for i, layer in enumerate(gateway_layers) if layer.cls is HFForwarder), len(gateway_layers))
    found = list(gateway_layers)
    found.insert(index, Layer(LocalModelGate, {"config": gate}, (process,)))
    return found


def _looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a folder rather than a Hub id (``org/name``)."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)


def _port_of(upstream: Upstream) -> int:
    port = urlsplit(upstream.base).port
    if port is None:
        raise ValueError(f"upstream {upstream.name!r}: no port in {upstream.url!r}")
    return port


def _free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the child binds it a little later)."""
    with socket.socket() as s:
        s.bind((LOCAL_HOST, 0))
        port: int = s.getsockname()[1]
        return port
