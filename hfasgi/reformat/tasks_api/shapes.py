"""The provider task API's shapes: a provider request → the gateway's canonical request, and back for answers.

A task endpoint (``POST {prefix}summarization``) or ``POST {prefix}run`` becomes the request the rest
of the gateway already serves:

* an HF task: ``Operation(Route.TASK, <hf task>, path_model=<model>, task_forced=True)`` with the body
  ``{"inputs", "parameters"}`` (``embedding`` is ``feature-extraction``, whose options go at the root);
* ``conversational``: ``Operation(Route.CHAT, "chat-completion", path_model=<model>)`` with an OpenAI
  chat body whose messages alternate user and assistant turns from the conversation so far.

Conversations: ``past_user_inputs`` and ``generated_responses`` must have the same length, one reply
per past input (the shape every answer hands back); anything else is a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hfasgi.catalog import PLACEHOLDER_MODELS, ModelCatalog
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import Operation, Route, is_model_id
from hfasgi.reformat.base import bad_upstream

__all__ = ["PROVIDER_TASKS", "Conversation", "ProviderCall", "check_knobs", "hf_task", "provider_call"]

PROVIDER_TASKS: Mapping[str, str] = {
    "text-generation": "text-generation",
    "conversational": "chat-completion",
    "summarization": "summarization",
    "translation": "translation",
    "question-answering": "question-answering",
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "zero-shot-classification": "zero-shot-classification",
    "fill-mask": "fill-mask",
    "sentence-similarity": "sentence-similarity",
    "embedding": "feature-extraction",
    "feature-extraction": "feature-extraction",
}
"""The provider tasks (endpoint names, ``run``'s ``task``) and the HF task each one is."""

_KNOWN = ", ".join(PROVIDER_TASKS)
_TEI_OPTIONS = frozenset(
    ("normalize", "prompt_name", "truncate", "truncation_direction", "dimensions", "encoding_format")
)
"""feature-extraction's options: the canonical body has them at its root (hf_api.md §2.4)."""
_CHAT_KNOBS = ("max_tokens", "temperature", "top_p", "seed")
_TEXT_TASKS = frozenset(
    ("text-generation", "summarization", "translation", "text-classification", "token-classification")
    + ("zero-shot-classification", "fill-mask")
)


_TEXT2TEXT = frozenset({"summarization", "translation"})
# Generation knobs a provider request (or a model mapping) gives at the top of `parameters`.
_GENERATION_KNOBS = ("max_tokens", "max_new_tokens", "temperature", "top_p", "top_k", "do_sample")


def _bad(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)


def hf_task(name: str) -> str:
    """The HF task of a provider task name (``embedding`` → ``feature-extraction``); other names as they are."""
    return PROVIDER_TASKS.get(name, name)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversational request's history and new input (its answer hands them back, extended)."""

    past_user_inputs: tuple[str, ...]
    generated_responses: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One provider request as the gateway serves it: the canonical operation and body, and the answer's shape."""

    task: str
    """The provider task (``conversational``, ``embedding``, ``summarization``, ...)."""
    operation: Operation
    document: dict[str, Any]
    """The canonical body (HF task body, or OpenAI chat for ``conversational``)."""
    conversation: Conversation | None = None

    def answer(self, document: Any) -> Any:
        """The canonical 2xx JSON answer → the provider's; raises ``UpstreamShapeError`` for one it cannot read."""
        if self.conversation is not None:
            return _conversation_answer(self.conversation, document)
        shape = _ANSWERS.get(self.task)
        return {"output": shape(document) if shape is not None else document}


def provider_call(endpoint: str, document: Any, catalog: ModelCatalog) -> ProviderCall:
    """The canonical request of ``POST {prefix}{endpoint}`` (a provider task, or ``run``) with body ``document``.

    Raises a 400 :class:`GatewayError` naming what is wrong: not an object, an unknown task, missing
    ``inputs``/``text``, a parameter of the wrong type, no model and no default model.
    """
    if not isinstance(document, dict):
        raise _bad("The request body must be a JSON object")
    parameters = _parameters(document.get("parameters"))
    if endpoint == "run":
        task = document.get("task")
        if not isinstance(task, str) or not task:
            raise _bad(f"'task' is required: the task to run, one of {_KNOWN}")
        if task not in PROVIDER_TASKS:
            raise _bad(f"Unknown task {task[:64]!r}: one of {_KNOWN}")
        model, where = document.get("model"), "model"
        if model is None and parameters.get("model") is not None:
            model, where = parameters["model"], "parameters.model"
    else:
        task, model, where = endpoint, parameters.get("model"), "parameters.model"
    parameters.pop("model", None)
    if "stream" in parameters:
        raise _bad("'stream' goes at the root of the body, not in 'parameters'")
    check_knobs(parameters, "parameters")
    stream = document.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false")
    if stream and task != "text-generation":
        raise _bad(f"The {task} task does not stream: leave 'stream' out (only text-generation streams)")
    model = _model(model, where, catalog)
    entry = catalog.entry(model)
    defaults = {k: v for k, v in (entry.parameters or {}).items() if k not in ("model", "stream")} if entry else {}
    if task == "conversational":
        return _conversational(endpoint, document, parameters, defaults, model)
    inputs = _inputs(task, document.get("inputs"))
    if task == "text-generation":
        merged = {**_max_new_tokens(defaults, strict=False), **_max_new_tokens(parameters, strict=True)}
        body: dict[str, Any] = {"inputs": inputs, "parameters": merged}
        if stream is not None:
            body["stream"] = stream
    elif PROVIDER_TASKS[task] == "feature-extraction":
        unknown = sorted(set(parameters) - _TEI_OPTIONS)
        if unknown:
            raise _bad(f"parameters.{unknown[0]} is not an embedding option (known: {', '.join(sorted(_TEI_OPTIONS))})")
        body = {"inputs": inputs, **{k: v for k, v in defaults.items() if k in _TEI_OPTIONS}, **parameters}
    elif task in _TEXT2TEXT:
        merged = _generate_parameters({**_generation_defaults(defaults, keep=True), **parameters})
        body = {"inputs": inputs, "parameters": merged}
    else:
        body = {"inputs": inputs, "parameters": {**_generation_defaults(defaults, keep=False), **parameters}}
    if "options" in document:
        body["options"] = document["options"]
    hf = PROVIDER_TASKS[task]
    return ProviderCall(task, Operation(Route.TASK, hf, path_model=model, task_forced=True), body)


def check_knobs(parameters: Mapping[str, Any], where: str) -> None:
    """400 when a common generation parameter has the wrong type (``max_tokens``, ``temperature``, ...)."""
    for name in ("max_tokens", "max_new_tokens"):
        value = parameters.get(name)
        if value is not None and (type(value) is not int or value < 1):
            raise _bad(f"{where}.{name} must be a positive integer")
    for name, top in (("temperature", None), ("top_p", 1)):
        value = parameters.get(name)
        if value is not None and (type(value) not in (int, float) or value < 0 or (top is not None and value > top)):
            raise _bad(f"{where}.{name} must be a number" + (f" between 0 and {top}" if top else " >= 0"))
    seed = parameters.get("seed")
    if seed is not None and (type(seed) is not int or seed < 0):
        raise _bad(f"{where}.seed must be a non-negative integer")


# --- requests -----------------------------------------------------------------------------------------------


def _parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("'parameters' must be an object")
    return dict(value)


def _model(value: Any, where: str, catalog: ModelCatalog) -> str:
    if value is not None and not isinstance(value, str):
        raise _bad(f"'{where}' must be a string (a model id)")
    if value is None or value in PLACEHOLDER_MODELS:
        try:
            return catalog.resolve(None).model
        except GatewayError as err:
            if err.error_type != ErrorType.MODEL_REQUIRED:
                raise
            raise GatewayError(
                400,
                ErrorType.MODEL_REQUIRED,
                f"No model was given and the gateway has no default model: name one in '{where}'",
            ) from None
    if not is_model_id(value):
        raise _bad(f"Invalid model id in '{where}': {value[:100]!r} (expected 'name' or 'org/name')")
    return value


def _inputs(task: str, inputs: Any) -> Any:
    if inputs is None:
        raise _bad(f"'inputs' is required for {task}")
    if task in _TEXT_TASKS:
        if not isinstance(inputs, str):
            raise _bad(f"'inputs' must be a string for {task}")
    elif task in ("embedding", "feature-extraction"):
        if not (isinstance(inputs, str) or (_strings(inputs) and inputs)):
            raise _bad(f"'inputs' must be a string or a non-empty list of strings for {task}")
    elif task == "question-answering":
        if not (isinstance(inputs, dict) and _all_str(inputs, "question", "context")):
            raise _bad("'inputs' must be an object with the strings 'question' and 'context'")
    elif task == "sentence-similarity":
        ok = isinstance(inputs, dict) and _all_str(inputs, "source_sentence") and _strings(inputs.get("sentences"))
        if not ok:
            raise _bad("'inputs' must be an object with 'source_sentence' (a string) and 'sentences' (strings)")
    return inputs


def _all_str(doc: dict[str, Any], *names: str) -> bool:
    return all(isinstance(doc.get(name), str) for name in names)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _generation_defaults(defaults: dict[str, Any], *, keep: bool) -> dict[str, Any]:
    """A mapped model's default parameters for a task: generation knobs kept only for text-to-text tasks.

    A mapping's parameters (``{"temperature": 0.7, "max_tokens": 2048}`` in the contract's example) are
    the model's for every task; a classification request has no use for them, so they are left out there.
    """
    dropped = ("seed",) if keep else (*_GENERATION_KNOBS, "seed")  # HF tasks take no seed
    return {k: v for k, v in defaults.items() if k not in dropped}


def _generate_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """summarization/translation: top-level generation knobs go into ``generate_parameters`` (the HF spec's place).

    ``max_tokens`` there is ``max_new_tokens``; what the request put in ``generate_parameters`` itself wins.
    """
    knobs = {k: parameters[k] for k in _GENERATION_KNOBS if k in parameters}
    if not knobs:
        return parameters
    out = {k: v for k, v in parameters.items() if k not in _GENERATION_KNOBS}
    if "max_tokens" in knobs:
        if "max_new_tokens" in knobs:
            raise _bad("Give one of parameters.max_tokens and parameters.max_new_tokens, not both")
        knobs["max_new_tokens"] = knobs.pop("max_tokens")
    nested = out.get("generate_parameters")
    if nested is not None and not isinstance(nested, dict):
        raise _bad("parameters.generate_parameters must be an object")
    out["generate_parameters"] = {**knobs, **(nested or {})}
    return out


def _max_new_tokens(parameters: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """``max_tokens`` → ``max_new_tokens`` (TGI's name); both is a 400 in a request (in defaults, the latter wins)."""
    if "max_tokens" not in parameters:
        return parameters
    out = dict(parameters)
    value = out.pop("max_tokens")
    if "max_new_tokens" in out:
        if strict:
            raise _bad("Give one of parameters.max_tokens and parameters.max_new_tokens, not both")
        return out
    out["max_new_tokens"] = value
    return out


def _conversational(
    endpoint: str, document: dict[str, Any], parameters: dict[str, Any], defaults: dict[str, Any], model: str
) -> ProviderCall:
    source: Any = document
    if endpoint == "run" or ("text" not in document and "inputs" in document):
        source = document.get("inputs")
        if isinstance(source, str):
            source = {"text": source}
        elif not isinstance(source, dict):
            raise _bad("'inputs' must be the text, or an object with 'text' (and the past turns)")
    conversation = _conversation(source)
    knobs = _chat_knobs(parameters, strict=True)
    body: dict[str, Any] = {"model": model, "messages": _messages(conversation)}
    body.update({**_chat_knobs(defaults, strict=False), **knobs})
    operation = Operation(Route.CHAT, "chat-completion", path_model=model)
    return ProviderCall("conversational", operation, body, conversation)


def _conversation(source: dict[str, Any]) -> Conversation:
    text = source.get("text")
    if text is None:
        raise _bad("'text' is required for conversational: the user's new message")
    if not isinstance(text, str) or not text:
        raise _bad("'text' must be a non-empty string")
    past: list[tuple[str, ...]] = []
    for name in ("past_user_inputs", "generated_responses"):
        turns = source.get(name)
        if turns is None:
            turns = []
        if not _strings(turns):
            raise _bad(f"'{name}' must be a list of strings")
        past.append(tuple(turns))
    users, replies = past
    if len(users) != len(replies):
        raise _bad(
            "'past_user_inputs' and 'generated_responses' must have the same length (one reply per past input), "
            f"got {len(users)} and {len(replies)}"
        )
    return Conversation(users, replies, text)


def _messages(conversation: Conversation) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for user, reply in zip(conversation.past_user_inputs, conversation.generated_responses, strict=True):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": reply})
    messages.append({"role": "user", "content": conversation.text})
    return messages


def _chat_knobs(parameters: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """The chat parameters of a conversational request (``max_new_tokens`` is taken as ``max_tokens``).

    A request's other parameters are a 400 (they would be silently lost); a model's defaults keep only these.
    """
    if strict:
        unknown = sorted(set(parameters) - {*_CHAT_KNOBS, "max_new_tokens"})
        if unknown:
            raise _bad(f"parameters.{unknown[0]} is not a conversational parameter (known: {', '.join(_CHAT_KNOBS)})")
        if "max_tokens" in parameters and "max_new_tokens" in parameters:
            raise _bad("Give one of parameters.max_tokens and parameters.max_new_tokens, not both")
    knobs = {name: parameters[name] for name in _CHAT_KNOBS if name in parameters}
    if "max_tokens" not in knobs and "max_new_tokens" in parameters:
        knobs["max_tokens"] = parameters["max_new_tokens"]
    return knobs


# --- answers ------------------------------------------------------------------------------------------------


def _generated(document: Any) -> list[Any]:
    items = document if isinstance(document, list) else [document]
    if not items or not all(isinstance(item, dict) and isinstance(item.get("generated_text"), str) for item in items):
        raise bad_upstream("a text-generation answer without 'generated_text'")
    return items


def _first_with(key: str) -> Callable[[Any], Any]:
    def first(document: Any) -> Any:
        item = document[0] if isinstance(document, list) and document else document
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            raise bad_upstream(f"an answer without {key!r}")
        return item

    return first


def _answer(document: Any) -> Any:
    """question-answering: an object, or a list of them when ``top_k`` > 1 asked for several."""
    items = document if isinstance(document, list) else [document]
    if not items or not all(isinstance(item, dict) and "answer" in item for item in items):
        raise bad_upstream("a question-answering answer without 'answer'")
    return document


_ANSWERS: dict[str, Callable[[Any], Any]] = {
    "text-generation": _generated,
    "summarization": _first_with("summary_text"),
    "translation": _first_with("translation_text"),
    "question-answering": _answer,
}


def _conversation_answer(conversation: Conversation, document: Any) -> dict[str, Any]:
    try:
        message = document["choices"][0]["message"]
        reply = message.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise bad_upstream("a chat completion without choices[0].message") from None
    if not isinstance(reply, str):
        raise bad_upstream("a chat completion whose message content is not text")
    return {
        "generated_text": reply,
        "conversation": {
            "past_user_inputs": [*conversation.past_user_inputs, conversation.text],
            "generated_responses": [*conversation.generated_responses, reply],
        },
    }
