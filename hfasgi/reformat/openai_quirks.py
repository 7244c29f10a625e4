"""OpenAI ⇄ OpenAI across upstream quirks: chat, completions and embeddings answers made uniform.

Upstreams that all speak the OpenAI dialect still differ (docs/hf_api.md §3.6, §4.1, §7, §8.14):
``transformers serve`` answers ``model: "<id>@main"``, leaves out ``system_fingerprint``, always puts
``usage`` on its last chunk and sends no ``[DONE]``; the router answers the provider's own model id.
The client gets one shape whatever the upstream:

* ``model`` is the id the client asked for (``dummy``/``tgi`` resolved to the default model);
* ``system_fingerprint`` is present (the upstream's when it sent one);
* stream chunks carry ``"usage": null``, and the usage-only chunk (``choices: []``) comes only when
  the client asked for it with ``stream_options.include_usage``: split off the last chunk when the
  upstream put the usage there, dropped when the client did not ask;
* the stream ends with ``data: [DONE]`` (added by the middleware).
"""

from __future__ import annotations

import json
from typing import Any

from hfasgi.reformat.base import Request, Translator

__all__ = ["SYSTEM_FINGERPRINT", "OpenAIQuirks", "openai_quirks"]

SYSTEM_FINGERPRINT = "hfasgi"
"""The ``system_fingerprint`` given to answers whose upstream sent none."""

_FAST_MODELS: dict[str, bytes] = {}


class OpenAIQuirks(Translator):
    """The model id, fingerprint and usage rules above, on a chat, completions or embeddings answer."""

    __slots__ = ("_include_usage", "_model", "_usage_sent", "fast_model")

    def __init__(self, request: Request) -> None:
        super().__init__(request.op, client_done=True)
        document = request.document
        options = document.get("stream_options") if isinstance(document, dict) else None
        self._include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._model = request.route.model
        self._usage_sent = False
        fast = _FAST_MODELS.get(self._model)
        if fast is None:
            fast = ('"model":' + json.dumps(self._model, ensure_ascii=False)).encode()
            if len(_FAST_MODELS) < 1024:
                _FAST_MODELS[self._model] = fast
        self.fast_model = fast
        """The bytes ``"model":"<id>"``: an answer holding them (and a fingerprint) needs no rewrite."""

    def unchanged(self, payload: bytes, *, event: bool) -> bool:
        if self.fast_model not in payload or b'"system_fingerprint":"' not in payload:
            return False
        return not event or (b'"usage":null' in payload and b'"choices":[]' not in payload)

    def response(self, document: Any) -> Any:
        if isinstance(document, dict):
            if "model" in document or "choices" in document:
                document["model"] = self._model
            if "choices" in document and not document.get("system_fingerprint"):
                document["system_fingerprint"] = SYSTEM_FINGERPRINT
        return document

    def event(self, document: Any) -> list[Any]:
        if not isinstance(document, dict) or "choices" not in document:
            return [document]
        document["model"] = self._model
        if not document.get("system_fingerprint"):
            document["system_fingerprint"] = SYSTEM_FINGERPRINT
        usage = document.get("usage")
        if not document["choices"]:  # a usage-only chunk
            if not self._include_usage or self._usage_sent:
                return []
            self._usage_sent = True
            return [document]
        if usage is None:
            document["usage"] = None
            return [document]
        document["usage"] = None  # transformers serve: the usage rides on the last chunk
        if not self._include_usage or self._usage_sent:
            return [document]
        self._usage_sent = True
        return [document, {**document, "choices": [], "usage": usage}]


def openai_quirks(request: Request) -> OpenAIQuirks:
    """The translator for an OpenAI-dialect request to an OpenAI-dialect upstream."""
    return OpenAIQuirks(request)
