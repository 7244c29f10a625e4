"""A gateway that brings its own model: ``hfasgi serve --local-model DIR`` runs ``transformers serve`` itself.

* :mod:`hfasgi.local.process` — :class:`ManagedProcess`, a child server started, health-checked,
  restarted with backoff and stopped (never orphaned) by the app's lifespan; :mod:`hfasgi.local.posix`,
  its launcher, exit wait and process-group signals.
* :mod:`hfasgi.local.gate` — :class:`LocalModelGate`, 503 + ``Retry-After`` while the child restarts.
* :mod:`hfasgi.local.wiring` — how ``create_app`` and ``build_catalog`` use them.
* :mod:`hfasgi.local.prepare` and :mod:`hfasgi.local.tiny` — model folders built offline
  (``hfasgi local prepare-smollm2 DIR``, ``hfasgi local prepare-tiny DIR``).

Nothing here imports torch or transformers until a model is built.
"""

from __future__ import annotations

from hfasgi.local.gate import LocalGateConfig, LocalModelGate, Supervised
from hfasgi.local.prepare import PrepareError, convert_gguf, find_smollm2_gguf, prepare_smollm2
from hfasgi.local.process import ManagedProcess, ProcessConfig, ProcessStartError
from hfasgi.local.wiring import (
    LOCAL_UPSTREAM,
    add_local_model,
    child_environment,
    install_local_model,
    local_model_id,
    serve_command,
)

__all__ = [
    "LOCAL_UPSTREAM",
    "LocalGateConfig",
    "LocalModelGate",
    "ManagedProcess",
    "PrepareError",
    "ProcessConfig",
    "ProcessStartError",
    "Supervised",
    "add_local_model",
    "child_environment",
    "convert_gguf",
    "find_smollm2_gguf",
    "install_local_model",
    "local_model_id",
    "prepare_smollm2",
    "serve_command",
]
