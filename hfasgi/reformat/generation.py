"""TGI text generation ⇄ OpenAI ``/v1/completions``, both ways, whole answers and streams.

Three builders (docs/hf_api.md §3, §5.4, §5.5, §8.12):

* :func:`tgi_to_completions`: a TGI client (``/generate``, ``/generate_stream``, ``/`` or a
  text-generation task route) on an OpenAI-speaking upstream, which only has ``/v1/completions``;
* :func:`completions_to_tgi`: an OpenAI ``/v1/completions`` client on the HF task API (router,
  serverless), whose text-generation models are TGI-backed;
* :func:`tgi_to_task`: a TGI ``/generate`` or ``/generate_stream`` client on the HF task API.

Parameters one dialect cannot express are either refused with a 400 ``unsupported_operation`` (when
dropping them would change what the client gets, such as ``grammar``) or left out and named in the
translator's :attr:`ignored` tuple, which the middleware sends as the ``x-hfasgi-ignored-parameters``
response header. TGI clients never get huggingface_hub's "model_kwargs are not used" 400: it would make
the client stop streaming and asking for details for the whole endpoint (hf_api.md §5.7).

Finish reasons. OpenAI's ``"stop"`` covers both an end-of-sequence token and a stop sequence, TGI tells
them apart. The rule used for TGI clients: vLLM's ``stop_reason`` decides when the upstream sends it (a
string is the stop sequence that matched: ``"stop_sequence"``, else ``"eos_token"``); without it,
``"stop_sequence"`` when the request had stop sequences, else ``"eos_token"``. OpenAI clients get
``"length"`` for ``"length"`` and ``"stop"`` for both TGI reasons.
"""

from __future__ import annotations

import time
from typing import Any

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, bad_upstream, unsupported
from hfasgi.reformat.openai_quirks import SYSTEM_FINGERPRINT

__all__ = [
    "CompletionsFromTgi",
    "TaskForTgi",
    "TgiFromCompletions",
    "completions_to_tgi",
    "tgi_to_completions",
    "tgi_samples",
    "tgi_token_event",
    "tgi_to_task",
]

_TEXT_GENERATION = "text-generation"
_MISSING: Any = object()

# TGI parameter → OpenAI completions key, for the values both dialects mean the same way.
_TGI_TO_OPENAI = (
    ("max_new_tokens", "max_tokens"),
    ("stop", "stop"),
    ("seed", "seed"),
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("frequency_penalty", "frequency_penalty"),
)
# TGI parameters the translation reads itself (anything else given is reported as ignored).
_TGI_HANDLED = frozenset(
    {name for name, _ in _TGI_TO_OPENAI} | {"best_of", "details", "return_full_text", "grammar", "do_sample"}
)
# OpenAI completions keys the translation reads itself (anything else given is reported as ignored).
_OPENAI_HANDLED = frozenset(
    {"model", "prompt", "max_tokens", "stop", "seed", "temperature", "top_p", "frequency_penalty"}
    | {"stream", "stream_options", "n", "suffix", "echo", "logprobs", "best_of"}
)


class TgiFromCompletions(Translator):
    """TGI answers (``GenerateResponse``, ``/generate_stream`` events) made from OpenAI completions.

    Streams hold back one token event: the last one must carry ``generated_text`` and the details,
    and the upstream's usage may come after the last text (a usage-only chunk, or transformers serve's
    final chunk).
    """

    __slots__ = (
        "_details",
        "_finish",
        "_has_stop",
        "_held",
        "_index",
        "_parts",
        "_prefix",
        "_seed",
        "_stop_reason",
        "_usage",
        "_wrap",
        "ignored",
    )

    tgi_errors = True

    def __init__(
        self, upstream_op: Operation, body: Any, *, request: Request, params: dict[str, Any], ignored: tuple[str, ...]
    ) -> None:
        super().__init__(upstream_op, body)
        self.ignored = ignored
        """TGI parameters the request gave that the upstream cannot honour and were not sent."""
        self._wrap = request.op.route is not Route.GENERATE  # ``/`` and task routes answer ``[{...}]``
        self._prefix: str = body["prompt"] if params.get("return_full_text") else ""
        self._details = bool(params.get("details"))
        self._seed = params.get("seed")
        self._has_stop = bool(params.get("stop"))
        self._held: dict[str, Any] | None = None
        self._index = 0
        self._parts: list[str] = []
        self._finish: Any = None
        self._stop_reason: Any = _MISSING
        self._usage: dict[str, Any] = {}

    def response(self, document: Any) -> Any:
        choice, usage = _completion_choice(document)
        text = choice.get("text")
        if not isinstance(text, str):
            raise bad_upstream("a completion choice without a `text` string")
        out: dict[str, Any] = {"generated_text": self._prefix + text}
        if self._details:
            tokens = _logprob_tokens(choice.get("logprobs"))
            out["details"] = {
                "finish_reason": self._reason(choice.get("finish_reason"), choice.get("stop_reason", _MISSING)),
                "generated_tokens": _count(usage, "completion_tokens", len(tokens)),
                "seed": self._seed,
                "prefill": [],
                "tokens": tokens,
            }
        return [out] if self._wrap else out

    def event(self, document: Any) -> list[Any]:
        if not isinstance(document, dict):
            raise bad_upstream("a completion stream event that is not a JSON object")
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = document.get("choices")
        if not isinstance(choices, list):
            raise bad_upstream("a completion stream event without a `choices` list")
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return self._token(choice)
        return []  # a usage-only chunk, or another choice's

    def _token(self, choice: dict[str, Any]) -> list[Any]:
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise bad_upstream("a completion stream choice whose `text` is not a string")
        reason = choice.get("finish_reason")
        if reason is not None:
            self._finish = reason
            self._stop_reason = choice.get("stop_reason", _MISSING)
        if not text:
            return []  # a finish chunk without text: its reason goes on the held event
        self._parts.append(text)
        self._index += 1
        event = tgi_token_event(self._index, text, _chunk_logprob(choice.get("logprobs")))
        held, self._held = self._held, event
        return [held] if held is not None else []

    def flush(self) -> list[Any]:
        """The held token event as it is (no final text, no details), for a stream the upstream broke off.

        The middleware sends it before the error event, so the client keeps every token that came.
        """
        held, self._held = self._held, None
        return [held] if held is not None else []

    def end(self) -> list[Any]:
        last = self._held
        self._held = None
        if last is None:  # no text at all: TGI clients still need one event with a token
            last = tgi_token_event(1, "")
        last["generated_text"] = self._prefix + "".join(self._parts)
        if self._details:
            usage = self._usage
            last["details"] = {
                "finish_reason": self._reason(self._finish, self._stop_reason),
                "generated_tokens": _count(usage, "completion_tokens", self._index),
                "seed": self._seed,
                "input_length": _count(usage, "prompt_tokens", 0),
            }
        return [last]

    def _reason(self, reason: Any, stop_reason: Any) -> str:
        if reason == "length":
            return "length"
        if stop_reason is not _MISSING:  # vLLM: the matched stop string, or None/a token id for EOS
            return "stop_sequence" if isinstance(stop_reason, str) else "eos_token"
        return "stop_sequence" if self._has_stop else "eos_token"


def tgi_to_completions(request: Request) -> TgiFromCompletions:
    """A TGI generation request (``/generate``, ``/generate_stream``, ``/``, task route) as OpenAI completions.

    Raises a 400 when ``inputs`` is not a non-empty string, and an ``unsupported_operation`` 400 for
    ``grammar``, which OpenAI completions cannot express.
    """
    document = request.document
    if not isinstance(document, dict):
        raise _invalid("The request body must be a JSON object with `inputs` (a non-empty string)")
    inputs = document.get("inputs")
    if not isinstance(inputs, str) or not inputs:
        raise _invalid("`inputs` must be a non-empty string")
    params = document.get("parameters")
    sampling_default = params is None  # TGI: no `parameters` object at all means do_sample (hf_api.md §3.2)
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise _invalid("`parameters` must be a JSON object")
    if params.get("grammar") is not None:
        kind = request.route.upstream.kind.value
        raise unsupported(
            f"The `grammar` parameter is not supported: the upstream of model {request.route.model!r} "
            f"(kind {kind!r}) cannot constrain the output; route the model to a TGI upstream in the model catalog"
        )
    route = request.op.route
    stream = route is Route.GENERATE_STREAM or (route is not Route.GENERATE and document.get("stream") is True)
    body: dict[str, Any] = {"model": request.route.upstream_model, "prompt": inputs}
    for tgi_name, openai_name in _TGI_TO_OPENAI:
        value = params.get(tgi_name)
        if value is not None and value != []:
            body[openai_name] = value
    if not tgi_samples(params, sampling_default):
        body["temperature"] = 0  # TGI decodes greedily unless asked to sample; OpenAI samples unless told 0
    ignored = [name for name, value in params.items() if name not in _TGI_HANDLED and value is not None]
    best_of = params.get("best_of")
    if best_of is not None and not (isinstance(best_of, int) and best_of <= 1):
        if stream:
            ignored.append("best_of")  # TGI itself refuses best_of > 1 on a stream
        else:
            body["best_of"] = best_of
    if params.get("details"):
        body["logprobs"] = 1  # the sampled tokens' logprobs, for ``details.tokens`` (where the upstream has them)
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    upstream_op = Operation(Route.COMPLETIONS, _TEXT_GENERATION, path_model=request.route.model)
    return TgiFromCompletions(upstream_op, body, request=request, params=params, ignored=tuple(ignored))


class CompletionsFromTgi(Translator):
    """OpenAI ``text_completion`` answers and chunks made from TGI's (task API) generation."""

    __slots__ = ("_head", "_include_usage", "_tokens", "_usage_sent", "ignored")

    def __init__(
        self, upstream_op: Operation, body: Any, *, request: Request, include_usage: bool, ignored: tuple[str, ...]
    ) -> None:
        super().__init__(upstream_op, body, client_done=True)
        self.ignored = ignored
        """OpenAI parameters the request gave that TGI cannot honour and were not sent."""
        self._head = {
            "id": "cmpl-" + request.ctx.request_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": request.route.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        self._include_usage = include_usage
        self._tokens = 0
        self._usage_sent = False

    def response(self, document: Any) -> Any:
        item = document[0] if isinstance(document, list) and document else document
        if not isinstance(item, dict) or not isinstance(item.get("generated_text"), str):
            raise bad_upstream("a text-generation answer without a `generated_text` string")
        details = item.get("details")
        if not isinstance(details, dict):
            details = {}
        prefill = details.get("prefill")
        choice = {
            "index": 0,
            "text": item["generated_text"],
            "logprobs": None,
            "finish_reason": _openai_reason(details.get("finish_reason")),
        }
        usage = _usage(len(prefill) if isinstance(prefill, list) else 0, _count(details, "generated_tokens", 0))
        return {**self._head, "choices": [choice], "usage": usage}

    def event(self, document: Any) -> list[Any]:
        token = document.get("token") if isinstance(document, dict) else None
        if not isinstance(token, dict):
            raise bad_upstream("a text-generation stream event without a `token` object")
        text = "" if token.get("special") else token.get("text") or ""
        if not isinstance(text, str):
            raise bad_upstream("a text-generation stream token whose `text` is not a string")
        self._tokens += 1
        details = document.get("details")
        last = document.get("generated_text") is not None or details is not None
        if not isinstance(details, dict):
            details = {}
        reason = _openai_reason(details.get("finish_reason")) if last else None
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        out: list[Any] = [{**self._head, "choices": [choice], "usage": None}]
        if last and self._include_usage and not self._usage_sent:
            self._usage_sent = True
            usage = _usage(_count(details, "input_length", 0), _count(details, "generated_tokens", self._tokens))
            out.append({**self._head, "choices": [], "usage": usage})
        return out

    def end(self) -> list[Any]:
        if not self._include_usage or self._usage_sent:
            return []
        self._usage_sent = True  # the stream ended without TGI's last event: count what came
        return [{**self._head, "choices": [], "usage": _usage(0, self._tokens)}]


def completions_to_tgi(request: Request) -> CompletionsFromTgi:
    """An OpenAI ``/v1/completions`` request as text generation on the HF task API.

    Raises an ``unsupported_operation`` 400 for what TGI cannot answer: several prompts, token-id
    prompts, ``n`` > 1, ``suffix``, ``echo`` and ``logprobs``.
    """
    document = request.document
    if not isinstance(document, dict):
        raise _invalid("The request body must be a JSON object")
    prompt = document.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise unsupported(
                f"This upstream generates for one prompt per request, got {len(prompt)}: send one string as `prompt`"
            )
        prompt = prompt[0]
        if not isinstance(prompt, str):
            raise unsupported("Token-id prompts are not supported on this upstream: send the prompt as a string")
    elif not isinstance(prompt, str):
        raise _invalid("`prompt` must be a string")
    n = document.get("n")
    if n is not None and n != 1:
        raise unsupported("`n` > 1 is not supported on this upstream: send one request per completion")
    if document.get("suffix"):
        raise unsupported("`suffix` is not supported on this upstream: add the suffix to the prompt yourself")
    if document.get("echo"):
        raise unsupported("`echo` is not supported on this upstream: prepend the prompt to the completion yourself")
    if document.get("logprobs") is not None:
        raise unsupported("`logprobs` is not supported on this upstream's completions: leave it out")
    stream = document.get("stream") is True
    params: dict[str, Any] = {}
    for tgi_name, openai_name in _TGI_TO_OPENAI:
        value = document.get(openai_name)
        if value is not None:
            params[tgi_name] = value
    if isinstance(params.get("stop"), str):
        params["stop"] = [params["stop"]]
    if params.get("top_p") == 1:
        del params["top_p"]  # OpenAI's default; TGI wants 0 < top_p < 1
    temperature = params.get("temperature")
    params["do_sample"] = temperature != 0  # as TGI's own completions route: 0 means greedy
    if temperature == 0:
        del params["temperature"]  # TGI wants temperature > 0
    ignored = [name for name, value in document.items() if name not in _OPENAI_HANDLED and value is not None]
    best_of = document.get("best_of")
    if best_of is not None and not (isinstance(best_of, int) and best_of <= 1):
        if stream:
            ignored.append("best_of")
        else:
            params["best_of"] = best_of
    params["return_full_text"] = False
    params["details"] = True
    if not stream:
        params["decoder_input_details"] = True  # the prefill gives the prompt's token count
    body = {"inputs": prompt, "parameters": params, "stream": stream}
    options = document.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    upstream_op = Operation(Route.TASK, _TEXT_GENERATION, path_model=request.route.model, task_forced=True)
    return CompletionsFromTgi(upstream_op, body, request=request, include_usage=include_usage, ignored=tuple(ignored))


class TaskForTgi(Translator):
    """A TGI ``/generate`` answer from the task API's ``[{...}]``; ``/generate_stream`` events pass as they are."""

    __slots__ = ("ignored",)

    tgi_errors = True

    def __init__(self, upstream_op: Operation, body: Any) -> None:
        super().__init__(upstream_op, body)
        self.ignored: tuple[str, ...] = ()
        """Always empty: the task route takes every TGI parameter."""

    def unchanged(self, payload: bytes, *, event: bool) -> bool:
        return event or payload[:1] == b"{"

    def response(self, document: Any) -> Any:
        if isinstance(document, list):
            if not document or not isinstance(document[0], dict):
                raise bad_upstream("an empty text-generation answer")
            return document[0]
        return document


def tgi_to_task(request: Request) -> TaskForTgi:
    """A TGI ``/generate`` or ``/generate_stream`` request on the HF task API (text-generation).

    The body is the client's, with ``stream`` set by the route and ``return_full_text`` false unless
    the client set it: the task route otherwise defaults it from the model's pipeline tag (TGI §3.1).
    """
    document = request.document
    if not isinstance(document, dict):
        raise _invalid("The request body must be a JSON object with `inputs` (a non-empty string)")
    body = {**document, "stream": request.op.route is Route.GENERATE_STREAM}
    params = document.get("parameters")
    if params is None:
        body["parameters"] = {"return_full_text": False}
    elif isinstance(params, dict) and params.get("return_full_text") is None:
        body["parameters"] = {**params, "return_full_text": False}
    upstream_op = Operation(Route.TASK, _TEXT_GENERATION, path_model=request.route.model, task_forced=True)
    return TaskForTgi(upstream_op, body)


def tgi_token_event(index: int, text: str, logprob: float = 0.0) -> dict[str, Any]:
    """One TGI ``/generate_stream`` token event (``id`` 0: an OpenAI-style upstream names no token ids)."""
    token = {"id": 0, "text": text, "logprob": logprob, "special": False}
    return {"index": index, "token": token, "generated_text": None, "details": None}


def tgi_samples(params: dict[str, Any], default: bool = False) -> bool:
    """Whether TGI would sample: ``do_sample``, or any warper (temperature, top_k, top_p, typical_p) set.

    TGI's token chooser samples when ``do_sample`` is true or a warper changes the distribution, and
    picks the most likely token otherwise (``server/text_generation_server/utils/tokens.py``).
    """
    do_sample = params.get("do_sample")
    if do_sample is not None:
        if do_sample:
            return True
    elif default:
        return True
    temperature, top_k, top_p, typical_p = (
        _number(params.get(k)) for k in ("temperature", "top_k", "top_p", "typical_p")
    )
    return (
        (temperature is not None and temperature != 1.0)
        or bool(top_k)
        or (top_p is not None and top_p < 1.0)
        or (typical_p is not None and typical_p < 1.0)
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)


def _completion_choice(document: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first choice (index 0) of a ``text_completion`` and its usage (empty when absent)."""
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list) or not choices:
        raise bad_upstream("a completion without a `choices` list")
    choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0])
    if not isinstance(choice, dict):
        raise bad_upstream("a completion choice that is not a JSON object")
    usage = document.get("usage")
    return choice, usage if isinstance(usage, dict) else {}


def _count(document: dict[str, Any], key: str, default: int) -> int:
    value = document.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _openai_reason(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def _logprob(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _logprob_tokens(logprobs: Any) -> list[dict[str, Any]]:
    """TGI ``Token`` objects from OpenAI completion ``logprobs`` (``tokens``, ``token_logprobs``)."""
    if not isinstance(logprobs, dict):
        return []
    texts, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(texts, list):
        return []
    if not isinstance(values, list):
        values = []
    tokens = []
    for i, text in enumerate(texts):
        logprob = _logprob(values[i]) if i < len(values) else 0.0
        tokens.append({"id": 0, "text": text if isinstance(text, str) else "", "logprob": logprob, "special": False})
    return tokens


def _chunk_logprob(logprobs: Any) -> float:
    """A stream chunk's logprob: the sum over its tokens (usually one), 0.0 when the upstream sent none."""
    if not isinstance(logprobs, dict):
        return 0.0
    values = logprobs.get("token_logprobs")
    if not isinstance(values, list):
        return 0.0
    return sum(_logprob(v) for v in values)
