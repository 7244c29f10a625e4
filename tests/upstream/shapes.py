"""Pure, deterministic payloads of the fake Hugging Face server (hf_api.md §2.4, §3, §7).

Every output is a function of the request, so a test can compute the exact answer it expects:
``expected_generation(prompt, n)``, ``expected_embedding(text, dim)``, ``count_tokens(text)`` and
the ``expected_<task>`` helpers below are the same functions the fake uses to answer.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

JSON = Any

#: The vocabulary of generated tokens; 32 words, stepped by 7 (coprime), so 32 tokens never repeat.
WORDS: tuple[str, ...] = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basil", "cedar", "dune", "ember", "fjord",
)  # fmt: skip
DEFAULT_TOKENS = 8
EMBEDDING_DIM = 8
SYSTEM_FINGERPRINT = "3.3.6-native"
TGI_VERSION = "3.3.6"
TEXT_CLASSIFICATION_LABELS = ("POSITIVE", "NEGATIVE")
ENTITY_GROUPS = ("PER", "ORG", "LOC", "MISC")
MASK_TOKENS = ("[MASK]", "<mask>")
#: TGI ``error_type`` per status for the ``tgi`` error style (server.rs / infer/mod.rs).
TGI_ERROR_TYPES = {
    400: "validation",
    422: "validation",
    424: "generation",
    429: "overloaded",
    500: "incomplete_generation",
    503: "unhealthy",
}
ERROR_STYLES = ("tgi", "detail", "detail-list", "openai", "list", "array", "text", "html", "empty")


# --- generation -------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """The fake's tokenizer: whitespace-separated words."""
    return len(text.split())


def _seed(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def generated_words(prompt: str, n: int) -> list[str]:
    """The ``n`` words generated for ``prompt`` (a fixed sequence seeded from the prompt)."""
    start = _seed(prompt)
    return [WORDS[(start + 7 * i) % len(WORDS)] for i in range(n)]


def token_texts(prompt: str, n: int) -> list[str]:
    """Token texts as streamed: the first word bare, the others with a leading space."""
    return [w if i == 0 else " " + w for i, w in enumerate(generated_words(prompt, n))]


def expected_generation(prompt: str, n: int = DEFAULT_TOKENS) -> str:
    """The generated text (without the prompt) for ``prompt`` and ``n`` new tokens."""
    return "".join(token_texts(prompt, n))


def word_id(word: str) -> int:
    """A stable token id: 1000+index for vocabulary words, 5000..5999 for anything else."""
    stripped = word.strip()
    if stripped in WORDS:
        return 1000 + WORDS.index(stripped)
    return 5000 + _seed(stripped) % 1000


def token_logprob(i: int) -> float:
    """The logprob of the i-th generated token."""
    return round(-0.1 * (1 + i % 5), 4)


def tgi_tokens(prompt: str, n: int) -> list[dict[str, JSON]]:
    """TGI ``Token`` objects for the generation: ``{id, text, logprob, special}``."""
    return [
        {"id": word_id(t), "text": t, "logprob": token_logprob(i), "special": False}
        for i, t in enumerate(token_texts(prompt, n))
    ]


def tgi_prefill(prompt: str) -> list[dict[str, JSON]]:
    """TGI ``PrefillToken`` objects for the prompt words (the first has no logprob)."""
    return [
        {"id": word_id(w), "text": w, "logprob": None if i == 0 else token_logprob(i)}
        for i, w in enumerate(prompt.split())
    ]


def tgi_generate_response(
    prompt: str,
    n: int,
    *,
    details: bool = False,
    decoder_input_details: bool = False,
    seed: int | None = None,
    return_full_text: bool = False,
    finish_reason: str = "length",
) -> dict[str, JSON]:
    """A TGI ``GenerateResponse``: ``{"generated_text", "details"?}``."""
    text = expected_generation(prompt, n)
    out: dict[str, JSON] = {"generated_text": prompt + text if return_full_text else text}
    if details or decoder_input_details:
        out["details"] = {
            "finish_reason": finish_reason,
            "generated_tokens": n,
            "seed": seed,
            "prefill": tgi_prefill(prompt) if decoder_input_details else [],
            "tokens": tgi_tokens(prompt, n),
        }
    return out


def tgi_stream_events(
    prompt: str,
    n: int,
    *,
    details: bool = False,
    seed: int | None = None,
    return_full_text: bool = False,
    finish_reason: str = "length",
) -> list[dict[str, JSON]]:
    """TGI ``StreamResponse`` events; the last carries ``generated_text`` (and ``details`` when asked)."""
    events: list[dict[str, JSON]] = []
    tokens = tgi_tokens(prompt, n)
    for i, token in enumerate(tokens):
        events.append({"index": i + 1, "token": token, "generated_text": None, "details": None})
    if events:
        text = expected_generation(prompt, n)
        events[-1]["generated_text"] = prompt + text if return_full_text else text
        if details:
            events[-1]["details"] = {
                "finish_reason": finish_reason,
                "generated_tokens": n,
                "seed": seed,
                "input_length": count_tokens(prompt),
            }
    return events


# --- OpenAI-style chat and completions ---------------------------------------------------------


def messages_text(messages: list[JSON]) -> str:
    """The text the fake 'sees' in chat messages: every text content, joined by newlines."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


def expected_chat(messages: list[JSON], n: int = DEFAULT_TOKENS) -> str:
    """The assistant content generated for ``messages``."""
    return expected_generation(messages_text(messages), n)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """An OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True)
class Reply:
    """What every OpenAI-style reply of one request shares (``tf``: transformers serve, ``exclude_none``)."""

    id: str
    created: int
    model: str
    finish_reason: str
    usage: dict[str, int]
    tf: bool = False

    def head(self, obj: str) -> dict[str, JSON]:
        """``id, object, created, model[, system_fingerprint]``."""
        out: dict[str, JSON] = {"id": self.id, "object": obj, "created": self.created, "model": self.model}
        if not self.tf:
            out["system_fingerprint"] = SYSTEM_FINGERPRINT
        return out

    def choice(self, fields: dict[str, JSON], finish: bool = True) -> dict[str, JSON]:
        """A choice: ``logprobs: null`` and ``finish_reason`` (null unless ``finish``) are left out by transformers."""
        if self.tf:
            return {**fields, "finish_reason": self.finish_reason} if finish else fields
        return {**fields, "logprobs": None, "finish_reason": self.finish_reason if finish else None}


def chat_completion(reply: Reply, content: str) -> dict[str, JSON]:
    """A non-stream ``chat.completion``."""
    choice = reply.choice({"index": 0, "message": {"role": "assistant", "content": content}})
    return {**reply.head("chat.completion"), "choices": [choice], "usage": reply.usage}


def chat_chunks(reply: Reply, tokens: list[str], include_usage: bool = False) -> list[dict[str, JSON]]:
    """The ``chat.completion.chunk`` events of a stream (without the ``[DONE]`` terminator).

    HF/TGI style: one chunk per token (role on the first), ``"usage": null`` on each, then a usage-only
    chunk with ``choices: []`` only when ``include_usage``. transformers style: a role-only first chunk,
    content chunks, then a final chunk with ``finish_reason`` that always carries ``usage``; no nulls.
    """
    head = reply.head("chat.completion.chunk")
    if reply.tf:
        deltas: list[dict[str, JSON]] = [{"role": "assistant"}, *({"content": t} for t in tokens)]
        events = [{**head, "choices": [reply.choice({"index": 0, "delta": d}, finish=False)]} for d in deltas]
        return [*events, {**head, "choices": [reply.choice({"index": 0, "delta": {}})], "usage": reply.usage}]
    events = []
    for i, t in enumerate(tokens):
        delta: dict[str, JSON] = {"role": "assistant", "content": t} if i == 0 else {"content": t}
        choice = reply.choice({"index": 0, "delta": delta}, finish=i == len(tokens) - 1)
        events.append({**head, "choices": [choice], "usage": None})
    if include_usage:
        events.append({**head, "choices": [], "usage": reply.usage})
    return events


def completion(reply: Reply, texts: list[str]) -> dict[str, JSON]:
    """A non-stream ``text_completion`` with one choice per prompt."""
    choices = [reply.choice({"index": i, "text": text}) for i, text in enumerate(texts)]
    return {**reply.head("text_completion"), "choices": choices, "usage": reply.usage}


def completion_chunks(reply: Reply, tokens: list[list[str]], include_usage: bool = False) -> list[dict[str, JSON]]:
    """``text_completion`` stream chunks: per prompt index, one chunk per token.

    A usage-only chunk (``choices: []``) follows when ``include_usage``; transformers style puts ``usage``
    on the last chunk instead.
    """
    head = reply.head("text_completion")
    events = [
        {**head, "choices": [reply.choice({"index": index, "text": t}, finish=i == len(toks) - 1)]}
        for index, toks in enumerate(tokens)
        for i, t in enumerate(toks)
    ]
    if reply.tf and events:
        events[-1]["usage"] = reply.usage
    elif include_usage:
        events.append({**head, "choices": [], "usage": reply.usage})
    return events


# --- task outputs (wire shapes of hf_api.md §2.4) ----------------------------------------------


def expected_embedding(text: str, dim: int = EMBEDDING_DIM, *, normalize: bool = False) -> list[float]:
    """A ``dim``-float embedding computed from the characters of ``text`` (values in [0, 1))."""
    codes = [ord(c) for c in text] or [0]
    vec = [round(sum((c * (j + 1) + p) % 97 for p, c in enumerate(codes)) / (97 * len(codes)), 6) for j in range(dim)]
    if normalize:
        norm = math.sqrt(sum(v * v for v in vec))
        vec = [round(v / norm, 6) if norm else 0.0 for v in vec]
    return vec


def expected_features(inputs: str | list[str], dim: int = EMBEDDING_DIM, *, normalize: bool = False) -> JSON:
    """feature-extraction: ``[float]`` for a string, ``[[float]]`` for a list of strings."""
    if isinstance(inputs, str):
        return expected_embedding(inputs, dim, normalize=normalize)
    return [expected_embedding(t, dim, normalize=normalize) for t in inputs]


def expected_similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' embeddings (rounded to 6 places)."""
    va, vb = expected_embedding(a), expected_embedding(b)
    na, nb = math.sqrt(sum(x * x for x in va)), math.sqrt(sum(x * x for x in vb))
    return round(sum(x * y for x, y in zip(va, vb, strict=True)) / (na * nb), 6) if na and nb else 0.0


def expected_sentence_similarity(source: str, sentences: list[str]) -> list[float]:
    """sentence-similarity: ``[float]``, one score per sentence."""
    return [expected_similarity(source, s) for s in sentences]


def expected_text_classification(text: str, top_k: int | None = None) -> list[dict[str, JSON]]:
    """The inner list of text-classification (the wire wraps it: ``[[...]]``); score from the text length."""
    positive = round(0.525 + (len(text) % 10) / 20, 6)
    out = [
        {"label": TEXT_CLASSIFICATION_LABELS[0], "score": positive},
        {"label": TEXT_CLASSIFICATION_LABELS[1], "score": round(1 - positive, 6)},
    ]
    return out[:top_k] if top_k else out


def expected_token_classification(text: str, aggregation_strategy: str | None = "simple") -> list[dict[str, JSON]]:
    """token-classification: one entity per capitalised word, flat list.

    Uses ``entity_group`` unless ``aggregation_strategy == "none"`` (then ``entity: "B-<group>"``).
    """
    out = []
    for m in re.finditer(r"\b[A-Z]\w*", text):
        word = m.group(0)
        group = ENTITY_GROUPS[len(word) % len(ENTITY_GROUPS)]
        item: dict[str, JSON] = {"entity": f"B-{group}"} if aggregation_strategy == "none" else {"entity_group": group}
        item.update({"score": round(0.9 + (len(word) % 10) / 100, 6), "word": word, "start": m.start(), "end": m.end()})
        out.append(item)
    return out


def expected_summarization(text: str) -> list[dict[str, str]]:
    """summarization: ``[{"summary_text"}]``, the first half (rounded up) of the words."""
    words = text.split()
    return [{"summary_text": " ".join(words[: (len(words) + 1) // 2])}]


def expected_translation(text: str, tgt_lang: str | None = None) -> list[dict[str, str]]:
    """translation: ``[{"translation_text"}]``, the words reversed (prefixed ``[tgt] `` when given)."""
    reversed_text = " ".join(reversed(text.split()))
    return [{"translation_text": f"[{tgt_lang}] {reversed_text}" if tgt_lang else reversed_text}]


def expected_question_answering(question: str, context: str, top_k: int | None = None) -> JSON:
    """question-answering: the longest word of the context (an object; a list when ``top_k > 1``)."""
    spans = sorted(((m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", context)), key=lambda s: -len(s[0]))
    base = 1 / (1 + count_tokens(question))
    answers = [
        {"answer": w, "score": round(base / (i + 1), 6), "start": s, "end": e} for i, (w, s, e) in enumerate(spans)
    ] or [{"answer": "", "score": 0.0, "start": 0, "end": 0}]
    if top_k is not None and top_k > 1:
        return answers[:top_k]
    return answers[0]


def expected_fill_mask(text: str, top_k: int | None = None, targets: list[str] | None = None) -> list[dict[str, JSON]]:
    """fill-mask: ``[{sequence, score, token, token_str}]``; candidates are generated words (or ``targets``)."""
    k = top_k or (len(targets) if targets else 5)
    candidates = list(targets) if targets else generated_words(text, k)
    mask = next((m for m in MASK_TOKENS if m in text), None)
    out = []
    for i, tok in enumerate(candidates[:k]):
        sequence = text.replace(mask, tok, 1) if mask else f"{text} {tok}"
        out.append({"sequence": sequence, "score": round(0.5 ** (i + 1), 6), "token": word_id(tok), "token_str": tok})
    return out


def expected_zero_shot(
    text: str, candidate_labels: list[str] | str, multi_label: bool = False
) -> list[dict[str, JSON]]:
    """zero-shot-classification: ``[{label, score}]`` sorted by score (scores sum to 1 unless multi-label)."""
    labels = [s.strip() for s in candidate_labels.split(",")] if isinstance(candidate_labels, str) else candidate_labels
    weights = [1 + (len(text) + 3 * i + len(label)) % 5 for i, label in enumerate(labels)]
    total = sum(weights)
    scores = [round(w / 6, 6) if multi_label else round(w / total, 6) for w in weights]
    pairs = sorted(zip(labels, scores, strict=True), key=lambda p: -p[1])
    return [{"label": label, "score": score} for label, score in pairs]


def expected_table_question_answering(query: str, table: dict[str, list[str]]) -> dict[str, JSON]:
    """table-question-answering (an object): one cell picked from the query's length and word count."""
    columns = list(table)
    if not columns or not table[columns[0]]:
        return {"answer": "", "coordinates": [], "cells": [], "aggregator": "NONE"}
    col = len(query) % len(columns)
    cells = table[columns[col]]
    row = count_tokens(query) % len(cells)
    return {"answer": cells[row], "coordinates": [[row, col]], "cells": [cells[row]], "aggregator": "NONE"}


TASKS = (
    "text-generation",
    "text-classification",
    "token-classification",
    "summarization",
    "translation",
    "question-answering",
    "feature-extraction",
    "fill-mask",
    "zero-shot-classification",
    "sentence-similarity",
    "table-question-answering",
)


def run_task(task: str, body: JSON) -> JSON:
    """Answer a task-API body (``{"inputs", "parameters", ...}``) for a non-generation ``task``.

    Raises ``ValueError``/``KeyError``/``TypeError`` on a malformed body (the fake answers 400).
    """
    if not isinstance(body, dict) or "inputs" not in body:
        body = {"inputs": body}  # AIC: a body without `inputs` is itself the inputs
    inputs = body["inputs"]
    params = body.get("parameters") or {}
    if task == "feature-extraction":
        dim = body.get("dimensions") or EMBEDDING_DIM
        if not (isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(t, str) for t in inputs))):
            raise TypeError("`inputs` must be a string or a list of strings")
        return expected_features(inputs, int(dim), normalize=bool(body.get("normalize")))
    if task == "sentence-similarity":
        return expected_sentence_similarity(inputs["source_sentence"], list(inputs["sentences"]))
    if task == "question-answering":
        return expected_question_answering(inputs["question"], inputs["context"], params.get("top_k"))
    if task == "table-question-answering":
        return expected_table_question_answering(inputs["query"], inputs["table"])
    if not isinstance(inputs, str):
        raise TypeError(f"`inputs` must be a string for {task}")
    if task == "text-classification":
        return [expected_text_classification(inputs, params.get("top_k"))]
    if task == "token-classification":
        return expected_token_classification(inputs, params.get("aggregation_strategy", "simple"))
    if task == "summarization":
        return expected_summarization(inputs)
    if task == "translation":
        return expected_translation(inputs, params.get("tgt_lang"))
    if task == "fill-mask":
        return expected_fill_mask(inputs, params.get("top_k"), params.get("targets"))
    if task == "zero-shot-classification":
        labels = params["candidate_labels"]
        return expected_zero_shot(inputs, labels, bool(params.get("multi_label", False)))
    raise ValueError(f"The task `{task}` is not recognized by api-inference-community")


# --- info, models, errors ----------------------------------------------------------------------


def tgi_info(model_id: str) -> dict[str, JSON]:
    """TGI ``Info`` (docs/openapi.json)."""
    return {
        "model_id": model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": 128,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_input_tokens": 4095,
        "max_total_tokens": 4096,
        "validation_workers": 2,
        "max_client_batch_size": 4,
        "router": "text-generation-router",
        "version": TGI_VERSION,
        "sha": None,
        "docker_label": None,
    }


def model_card(model_id: str) -> dict[str, JSON]:
    """One ``/v1/models`` entry."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": model_id.split("/")[0]}


def error_message(status: int) -> str:
    """The message of scenario errors ``error:STATUS:STYLE``."""
    return f"Fake upstream error {status}"


def error_body(status: int, style: str, message: str | None = None) -> tuple[bytes, str | None]:
    """The body and content type of an error in one of :data:`ERROR_STYLES`."""
    msg = message if message is not None else error_message(status)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    payload: JSON
    if style == "tgi":
        payload = {"error": msg, "error_type": TGI_ERROR_TYPES.get(status, "generation")}
    elif style == "detail":
        payload = {"detail": msg}
    elif style == "detail-list":
        payload = {"detail": [{"type": "missing", "loc": ["body", "inputs"], "msg": msg, "input": None}]}
    elif style == "openai":
        kind = "invalid_request_error" if status < 500 else "server_error"
        payload = {"error": {"message": msg, "type": kind, "param": None, "code": status}}
    elif style == "list":
        payload = {"error": [f"{msg}: received `a` in `parameters`", f"{msg}: received `b` in `parameters`"]}
    elif style == "array":
        payload = [{"error": msg}]
    elif style == "text":
        return msg.encode(), "text/plain; charset=utf-8"
    elif style == "html":
        title = f"{status} {phrase}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{msg}</p></body></html>"
        return page.encode(), "text/html; charset=utf-8"
    elif style == "empty":
        return b"", None
    else:
        raise ValueError(f"unknown error style {style!r} (one of {', '.join(ERROR_STYLES)})")
    return dumps(payload), "application/json"


def dumps(obj: JSON) -> bytes:
    """Compact UTF-8 JSON, as serde/axum write it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
