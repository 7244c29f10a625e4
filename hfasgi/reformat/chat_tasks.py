"""HF task requests served by a chat-completion upstream, with a task prompt.

A model that only chats (``transformers serve``, vLLM, or a catalog model whose task is
``chat-completion``) can still answer the text tasks: the task becomes a system instruction and the
input the user message, and the assistant's reply is reshaped into the task's wire answer
(hf_api.md §2.4, §5.4, §8.6):

==========================  =====================================================================
task                        answer
==========================  =====================================================================
text-generation             ``[{"generated_text"}]``; with ``"stream": true`` TGI stream events
summarization               ``[{"summary_text"}]``
translation                 ``[{"translation_text"}]`` (needs ``parameters.tgt_lang``)
question-answering          ``{"answer", "score", "start", "end"}``
zero-shot-classification    ``[{"label", "score"}]`` over ``parameters.candidate_labels``
text-classification         ``[[{"label", "score"}]]``, only with ``parameters.candidate_labels``
==========================  =====================================================================

The scores are **not model probabilities**: a chat reply names one answer, so question-answering
scores 1.0 when the answer is a verbatim span of the context (0.0 otherwise), and classification
gives the named label 1.0 and every other label 0.0.
"""

from __future__ import annotations

import re
from typing import Any

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, bad_upstream, unsupported
from hfasgi.reformat.generation import tgi_samples, tgi_token_event

__all__ = ["CHAT_TASKS", "task_via_chat"]

CHAT_TASKS = frozenset(
    {
        "text-generation",
        "summarization",
        "translation",
        "question-answering",
        "zero-shot-classification",
        "text-classification",
    }
)
"""The HF tasks :func:`task_via_chat` can serve through a chat model (text-classification only with labels)."""

_SUMMARIZE = "Summarize the text the user sends. Reply with the summary only, without any preamble."
_TRANSLATE = "Translate the text the user sends {source}into {target}. Reply with the translation only."
_ANSWER = (
    "Answer the question using the context the user sends. Reply with the shortest span of the context "
    "that answers the question, copied exactly as it is written in the context, and nothing else."
)
_CLASSIFY = (
    "Classify the text the user sends. Reply with exactly one of these labels, written as given, "
    "and nothing else:\n{labels}"
)

# Common ISO 639-1 codes, named in the prompt (other codes, e.g. NLLB's ``fra_Latn``, are used as given).
_LANGUAGES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
# transformers' pipeline names a translation pair in the task: ``translation_en_to_fr``.
_PAIR_TASK = re.compile(r"translation_([A-Za-z]+(?:[-_][A-Za-z]+)?)_to_([A-Za-z]+(?:[-_][A-Za-z]+)?)")
# Trimmed off a classification reply before it is compared with the labels.
_REPLY_TRIM = " \t\r\n\"'`*.!"


def task_via_chat(request: Request) -> Translator:
    """Serve an HF task request (``{"inputs", "parameters"}``) through the upstream's chat completions.

    Raises a 400 ``unsupported_operation`` for a task a chat model cannot serve (or cannot stream),
    and a 400 ``invalid_request`` when the body lacks what the task needs.
    """
    task = request.task or ""
    pair = _PAIR_TASK.fullmatch(task)
    if pair:
        task = "translation"
    if task not in CHAT_TASKS:
        what = f"The task {task!r}" if task else "A request without a known task"
        raise unsupported(
            f"{what} cannot be served by {request.route.model!r}, a chat model on upstream "
            f"{request.route.upstream.name!r}: it needs a {task or 'task'} model, so route one to an upstream "
            f"that serves HF tasks (router, serverless or tgi) in the model catalog"
        )
    document = request.document
    if not isinstance(document, dict) or "inputs" not in document:
        raise _invalid(f'A {task} request must be a JSON object with "inputs"')
    params = document.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise _invalid('"parameters" must be a JSON object')
    stream = document.get("stream") is True
    if task == "text-classification" and params.get("candidate_labels") is None:
        raise unsupported(
            f"text-classification needs a text-classification model, and {request.route.model!r} is a chat model: "
            f"route a text-classification model in the model catalog, or pass parameters.candidate_labels "
            f"to have the chat model pick one of them"
        )
    if stream and task != "text-generation":
        raise unsupported(
            f'Streaming is only supported for text-generation through a chat model: drop "stream" for {task}'
        )
    if task == "text-generation":
        return _text_generation(request, document["inputs"], params, stream)
    if task == "question-answering":
        return _question_answering(request, document["inputs"], params)
    text = _text(document["inputs"], task)
    if task == "summarization":
        return _Text(_chat_op(request), _body(request, _SUMMARIZE, text, _text2text(params)), "summary_text")
    if task == "translation":
        system = _translation_prompt(params, pair)
        return _Text(_chat_op(request), _body(request, system, text, _text2text(params)), "translation_text")
    labels = _labels(params)
    system = _CLASSIFY.format(labels="\n".join(f"- {label}" for label in labels))
    body = _body(request, system, text, {})
    return _Labels(_chat_op(request), body, labels, nested=task == "text-classification")


# --- the translators ---------------------------------------------------------------------------


class _Text(Translator):
    """summarization and translation: ``[{<key>: content}]``."""

    __slots__ = ("_key",)

    def __init__(self, upstream_op: Operation, body: Any, key: str) -> None:
        super().__init__(upstream_op, body)
        self._key = key

    def response(self, document: Any) -> Any:
        return [{self._key: _message(document)[0].strip()}]


class _QuestionAnswering(Translator):
    """``{"answer", "score", "start", "end"}``, located in the context."""

    __slots__ = ("_context",)

    def __init__(self, upstream_op: Operation, body: Any, context: str) -> None:
        super().__init__(upstream_op, body)
        self._context = context

    def response(self, document: Any) -> Any:
        answer = _message(document)[0].strip()
        context = self._context
        start = context.find(answer) if answer else -1
        if start < 0:
            # a model may quote the span or end it with a full stop: look for the bare span
            bare = answer.strip(_REPLY_TRIM)
            start = context.find(bare) if bare else -1
            if start >= 0:
                answer = bare
        if start < 0:
            return {"answer": answer, "score": 0.0, "start": 0, "end": len(answer)}
        return {"answer": answer, "score": 1.0, "start": start, "end": start + len(answer)}


class _Labels(Translator):
    """zero-shot- and text-classification: the label the reply names scores 1.0, the others 0.0."""

    __slots__ = ("_index", "_labels", "_nested")

    def __init__(self, upstream_op: Operation, body: Any, labels: list[str], *, nested: bool) -> None:
        super().__init__(upstream_op, body)
        self._labels = labels
        self._nested = nested
        self._index: dict[str, int] = {}
        for i, label in enumerate(labels):
            self._index.setdefault(label.strip(_REPLY_TRIM).casefold(), i)

    def response(self, document: Any) -> Any:
        chosen = self._index.get(_message(document)[0].strip(_REPLY_TRIM).casefold())
        labels = self._labels
        if chosen is None:
            ranked = [{"label": label, "score": 0.0} for label in labels]
        else:
            ranked = [{"label": labels[chosen], "score": 1.0}]
            ranked.extend({"label": label, "score": 0.0} for i, label in enumerate(labels) if i != chosen)
        return [ranked] if self._nested else ranked


class _TextGeneration(Translator):
    """``[{"generated_text"}]``, or TGI ``/generate_stream`` events from chat chunks.

    Streamed, each content delta becomes one token event; the newest is held back so that the last
    one can carry ``generated_text`` (and ``details``) once the upstream stream has ended.
    """

    __slots__ = ("_details", "_finish", "_pending", "_prompt", "_seed", "_texts", "_usage")

    tgi_errors = True

    def __init__(self, upstream_op: Operation, body: Any, prompt: str | None, details: bool, seed: Any) -> None:
        super().__init__(upstream_op, body)
        self._prompt = prompt
        """The prompt when ``return_full_text`` is on (it starts ``generated_text``), else ``None``."""
        self._details = details
        self._seed = seed
        self._finish: str | None = None
        self._pending: dict[str, Any] | None = None
        self._texts: list[str] = []
        self._usage: dict[str, Any] | None = None

    def response(self, document: Any) -> Any:
        content, finish = _message(document)
        text = content if self._prompt is None else self._prompt + content
        answer: dict[str, Any] = {"generated_text": text}
        if self._details:
            completion_tokens = _usage_count(document.get("usage"), "completion_tokens")
            answer["details"] = {
                "finish_reason": _tgi_finish(finish),
                "generated_tokens": completion_tokens or 0,
                "seed": self._seed,
                "prefill": [],
                "tokens": [],
            }
        return [answer]

    def event(self, document: Any) -> list[Any]:
        if not isinstance(document, dict):
            raise bad_upstream("a chat stream chunk is not a JSON object")
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = document.get("choices")
        if not choices:  # a usage-only chunk (or a bare keep-alive object)
            return []
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise bad_upstream("a chat stream chunk's choices are not a list of objects")
        choice = choices[0]
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish = finish
        delta = choice.get("delta")
        if delta is None:
            return []
        if not isinstance(delta, dict):
            raise bad_upstream("a chat stream chunk's delta is not an object")
        text = delta.get("content")
        if not text or not isinstance(text, str):  # role-only, reasoning or tool-call deltas
            return []
        self._texts.append(text)
        out = [] if self._pending is None else [self._pending]
        self._pending = tgi_token_event(len(self._texts), text)
        return out

    def flush(self) -> list[Any]:
        held, self._pending = self._pending, None
        return [] if held is None else [held]

    def end(self) -> list[Any]:
        last = self._pending if self._pending is not None else tgi_token_event(1, "")
        self._pending = None
        text = "".join(self._texts)
        last["generated_text"] = text if self._prompt is None else self._prompt + text
        if self._details:
            usage = self._usage
            generated = _usage_count(usage, "completion_tokens")
            last["details"] = {
                "finish_reason": _tgi_finish(self._finish),
                "generated_tokens": len(self._texts) if generated is None else generated,
                "seed": self._seed,
                "input_length": _usage_count(usage, "prompt_tokens") or 0,
            }
        return [last]


# --- building the chat request -------------------------------------------------------------------


def _text_generation(request: Request, inputs: Any, params: dict[str, Any], stream: bool) -> Translator:
    prompt = _text(inputs, "text-generation")
    sampling = _sampling(params, ("max_new_tokens", "max_tokens"))
    _copy(sampling, params, "seed", int, "an integer")
    stop = params.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _invalid("parameters.stop must be a string or a list of strings")
        if stop:
            sampling["stop"] = stop
    if not tgi_samples(params, "parameters" not in (request.document or {})):
        sampling["temperature"] = 0  # TGI decodes greedily unless asked to sample; a chat model samples
    body = _body(request, None, prompt, sampling, stream=stream)
    details = params.get("details") is True or params.get("decoder_input_details") is True
    full = prompt if params.get("return_full_text") is True else None
    return _TextGeneration(_chat_op(request), body, full, details, params.get("seed"))


def _question_answering(request: Request, inputs: Any, params: dict[str, Any]) -> Translator:
    if not isinstance(inputs, dict):
        raise _invalid('question-answering needs "inputs": {"question": str, "context": str}')
    question, context = inputs.get("question"), inputs.get("context")
    if not isinstance(question, str) or not isinstance(context, str):
        raise _invalid('question-answering needs "inputs": {"question": str, "context": str}')
    user = f"Context:\n{context}\n\nQuestion: {question}"
    return _QuestionAnswering(_chat_op(request), _body(request, _ANSWER, user, {}), context)


def _translation_prompt(params: dict[str, Any], pair: re.Match[str] | None) -> str:
    source, target = params.get("src_lang"), params.get("tgt_lang")
    if target is None and pair is not None:
        source, target = pair.group(1), pair.group(2)
    if not isinstance(target, str) or not target.strip():
        raise _invalid(
            "translation through a chat model needs the target language: pass parameters.tgt_lang (and src_lang)"
        )
    if source is not None and not isinstance(source, str):
        raise _invalid("parameters.src_lang must be a string")
    return _TRANSLATE.format(
        source=f"from {_language(source)} " if source and source.strip() else "", target=_language(target)
    )


def _language(code: str) -> str:
    code = code.strip()
    name = _LANGUAGES.get(code.replace("-", "_").split("_")[0].lower())
    return f"{name} ({code})" if name else code


def _labels(params: dict[str, Any]) -> list[str]:
    raw = params.get("candidate_labels")
    if isinstance(raw, str):
        raw = [label.strip() for label in raw.split(",")]
    if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
        raise _invalid("parameters.candidate_labels must be a list of labels (or a comma-separated string)")
    labels = [label for label in raw if label.strip()]
    if not labels:
        raise _invalid("parameters.candidate_labels needs at least one non-empty label")
    return labels


def _text2text(params: dict[str, Any]) -> dict[str, Any]:
    """summarization/translation knobs: ``parameters`` first, then ``parameters.generate_parameters``."""
    generate = params.get("generate_parameters")
    if generate is not None and not isinstance(generate, dict):
        raise _invalid("parameters.generate_parameters must be a JSON object")
    sampling = _sampling(params, ("max_length", "max_new_tokens"))
    if generate:
        nested = _sampling(generate, ("max_new_tokens", "max_length"), "parameters.generate_parameters")
        for key, value in nested.items():
            sampling.setdefault(key, value)
    _copy(sampling, params, "seed", int, "an integer")
    return sampling


def _sampling(source: dict[str, Any], max_keys: tuple[str, ...], where: str = "parameters") -> dict[str, Any]:
    """``max_tokens`` (from the first of ``max_keys`` given), ``temperature`` and ``top_p`` from ``source``."""
    out: dict[str, Any] = {}
    for key in max_keys:
        value = source.get(key)
        if value is not None:
            if not _is_int(value) or value < 0:
                raise _invalid(f"{where}.{key} must be a non-negative integer")
            out["max_tokens"] = value
            break
    for key in ("temperature", "top_p"):
        _copy(out, source, key, (int, float), "a number", where)
    return out


def _copy(
    out: dict[str, Any], source: dict[str, Any], key: str, kind: Any, what: str, where: str = "parameters"
) -> None:
    value = source.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _invalid(f"{where}.{key} must be {what}")
    out[key] = value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _body(
    request: Request, system: str | None, user: str, sampling: dict[str, Any], *, stream: bool = False
) -> dict[str, Any]:
    """An OpenAI chat body with only keys every chat server knows (transformers serve 422s on others)."""
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    body: dict[str, Any] = {"model": request.route.upstream_model, "messages": messages, **sampling, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _chat_op(request: Request) -> Operation:
    return Operation(Route.CHAT, "chat-completion", path_model=request.route.model)


def _text(inputs: Any, task: str) -> str:
    if not isinstance(inputs, str):
        raise _invalid(f'"inputs" must be a string for {task} served by a chat model')
    return inputs


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)


# --- reading the chat answer ---------------------------------------------------------------------


def _message(document: Any) -> tuple[str, str | None]:
    """``choices[0].message.content`` (``""`` when null) and ``finish_reason`` of a chat completion."""
    if not isinstance(document, dict):
        raise bad_upstream("a chat completion is not a JSON object")
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise bad_upstream("a chat completion without choices[0]")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise bad_upstream("choices[0].message of a chat completion is not an object")
    content = message.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):  # content parts
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    elif not isinstance(content, str):
        raise bad_upstream("choices[0].message.content of a chat completion is not a string")
    finish = choice.get("finish_reason")
    return content, finish if isinstance(finish, str) else None


def _usage_count(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if _is_int(value) else None


_FINISH: dict[str | None, str] = {"length": "length", "stop_sequence": "stop_sequence"}


def _tgi_finish(reason: str | None) -> str:
    """A chat ``finish_reason`` as TGI names it (``stop`` and the rest become ``eos_token``)."""
    return _FINISH.get(reason, "eos_token")
