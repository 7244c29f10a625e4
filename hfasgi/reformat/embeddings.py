"""Embeddings across dialects.

* :func:`embeddings_to_features`: OpenAI ``POST /v1/embeddings`` on an HF upstream that runs feature-extraction
  (the router's pipeline route, the serverless API, or a TEI-style embedding server behind a ``tgi`` upstream).
* :func:`features_to_embeddings`: HF feature-extraction on an OpenAI-compatible upstream (``/v1/embeddings``).
* :func:`similarity_via_embeddings`: HF sentence-similarity on an OpenAI-compatible upstream: one embeddings
  call, the cosine similarities computed here.

Vectors stay plain Python lists of floats (no numpy). ``base64`` embeddings are little-endian float32, as
OpenAI sends them. "Normalised" means L2 norm 1; a vector within ``1e-4`` of that is left as it is, since
upstreams round their floats.
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import sys
from array import array
from typing import Any

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, UpstreamShapeError, bad_upstream, unsupported
from hfasgi.tokens import estimate_text

__all__ = ["embeddings_to_features", "features_to_embeddings", "similarity_via_embeddings"]

_UNIT_TOLERANCE = 1e-4
_BIG_ENDIAN = sys.byteorder == "big"


# --- OpenAI client, HF feature-extraction upstream ---------------------------------------------


def embeddings_to_features(request: Request) -> Translator:
    """OpenAI ``/v1/embeddings`` → HF feature-extraction, and its vectors back into an OpenAI ``list``.

    The upstream gets ``{"inputs", "normalize": true, "dimensions"?}`` (parameters at the root, as HF wants
    them); ``model``, ``encoding_format`` and ``user`` are OpenAI's and stay here. Token-id inputs get a 400:
    feature-extraction takes text.

    Every vector the client gets is normalised, as OpenAI's are: ``normalize`` asks the upstream for it, and
    vectors that still are not unit length (a server that ignores it, token-level outputs) are divided by
    their norm here. Token-level answers (one vector per token) are mean-pooled over the tokens first.
    With ``dimensions``, a longer vector is cut to that length and normalised again (Matryoshka embeddings);
    a shorter one is returned as it is. ``encoding_format: "base64"`` (the ``openai`` client's default)
    gives each vector as base64 of little-endian float32.

    Feature-extraction reports no token counts, so ``usage`` is an estimate:
    :func:`hfasgi.tokens.estimate_text` of each input, summed.
    """
    document = request.document
    texts = _openai_input(document)
    dimensions = _dimensions(document)
    encoding = document.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise _invalid(f"`encoding_format` must be 'float' or 'base64', got {encoding!r}")
    body: dict[str, Any] = {"inputs": texts, "normalize": True}
    if dimensions is not None:
        body["dimensions"] = dimensions
    single = isinstance(texts, str)
    tokens = estimate_text(texts) if isinstance(texts, str) else sum(map(estimate_text, texts))
    op = Operation(Route.TASK, "feature-extraction", path_model=request.route.model, task_forced=True)
    return _OpenAIEmbeddings(
        op,
        body,
        count=None if single else len(texts),
        dimensions=dimensions,
        as_base64=encoding == "base64",
        model=request.route.model,
        tokens=tokens,
    )


class _OpenAIEmbeddings(Translator):
    __slots__ = ("_as_base64", "_count", "_dimensions", "_model", "_tokens")

    def __init__(
        self,
        upstream_op: Operation,
        body: Any,
        *,
        count: int | None,
        dimensions: int | None,
        as_base64: bool,
        model: str,
        tokens: int,
    ) -> None:
        super().__init__(upstream_op, body, client_done=True)
        self._count = count
        """How many inputs the client sent as a list; ``None`` for one string."""
        self._dimensions = dimensions
        self._as_base64 = as_base64
        self._model = model
        self._tokens = tokens

    def response(self, document: Any) -> Any:
        vectors = _feature_vectors(document, self._count)
        _same_width(vectors)
        dimensions, data = self._dimensions, []
        for index, vector in enumerate(vectors):
            if dimensions is not None and len(vector) > dimensions:
                vector = vector[:dimensions]
            vector = _unit(vector)
            embedding: Any = _encode_base64(vector) if self._as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": self._tokens, "total_tokens": self._tokens}
        return {"object": "list", "data": data, "model": self._model, "usage": usage}


def _openai_input(document: Any) -> str | list[str]:
    if not isinstance(document, dict):
        raise _invalid("The body must be a JSON object with `model` and `input`")
    value = document.get("input")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return value
        if all(isinstance(item, int | list) and not isinstance(item, bool) for item in value):
            raise unsupported(
                "Token-id inputs cannot go to a Hugging Face feature-extraction upstream, which takes text: "
                "send `input` as a string or a list of strings"
            )
    raise _invalid("`input` must be a string or a non-empty list of strings")


def _feature_vectors(document: Any, count: int | None) -> list[Any]:
    """One vector per input out of a feature-extraction answer (``count``: list length, ``None``: one string)."""
    if count is None:
        items = [document]
    elif isinstance(document, list) and len(document) == count:
        items = document
    elif count == 1 and isinstance(document, list) and document and not isinstance(document[0], list):
        items = [document]  # one vector for a one-item list
    else:
        got = f"{len(document)} items" if isinstance(document, list) else type(document).__name__
        raise bad_upstream(f"expected {count} feature-extraction vectors, got {got}")
    try:
        return [_pooled(item) for item in items]
    except UpstreamShapeError:
        raise
    except (TypeError, ValueError, IndexError):
        raise bad_upstream("a feature-extraction answer must be a rectangular nested list of numbers") from None


def _pooled(value: Any) -> Any:
    """A vector (``[float]``) as it is; token vectors (``[[float]]`` or ``[[[float]]]``) mean-pooled."""
    if not isinstance(value, list) or not value:
        raise bad_upstream("a feature-extraction vector is empty or not a list")
    if not isinstance(value[0], list):
        return value
    rows = value
    if rows[0] and isinstance(rows[0][0], list):  # [batch of one][tokens][hidden]
        rows = [row for block in rows for row in block]
    if len(rows) == 1:
        return rows[0]
    size = len(rows)
    return [sum(column) / size for column in zip(*rows, strict=True)]


# --- HF client, OpenAI-compatible upstream -------------------------------------------------------


def features_to_embeddings(request: Request) -> Translator:
    """HF feature-extraction → OpenAI ``/v1/embeddings``, and its ``data`` back into ``[float]`` / ``[[float]]``.

    ``{"inputs": str | [str], ...}`` (a bare string or list body, the legacy form, is taken as the inputs)
    becomes ``{"model", "input", "encoding_format": "float", "dimensions"?}``; a list goes in one request.
    ``prompt_name`` gets a 400 (OpenAI servers have no named prompts). ``truncate`` and
    ``truncation_direction`` are not sent: OpenAI's API has no such fields, so the upstream applies its own
    policy to long inputs.

    ``normalize`` follows TEI, whose default is ``true``: unless it is ``false``, vectors that are not unit
    length are normalised here. ``normalize: false`` cannot undo an upstream's normalisation, so the vectors
    then come as the upstream sends them (OpenAI's are unit vectors anyway). With ``dimensions``, a longer
    vector is cut to that length (and normalised again unless ``normalize`` is ``false``). ``base64``
    embeddings from the upstream are decoded.
    """
    document = request.document
    if isinstance(document, dict):
        if "inputs" not in document:
            raise _invalid('feature-extraction takes {"inputs": str | [str]}')
        inputs, params = document["inputs"], document
    else:
        inputs, params = document, {}
    texts = isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs)
    if not (isinstance(inputs, str) or texts):
        raise _invalid("`inputs` must be a string or a non-empty list of strings")
    if params.get("prompt_name") is not None:
        raise unsupported(
            "`prompt_name` cannot be applied on an OpenAI-compatible upstream: "
            "put the prompt in front of each input yourself and drop `prompt_name`"
        )
    if params.get("encoding_format") not in (None, "float"):
        raise unsupported("feature-extraction answers lists of floats through this gateway: drop `encoding_format`")
    normalize = params.get("normalize")
    if normalize is not None and not isinstance(normalize, bool):
        raise _invalid(f"`normalize` must be true or false, got {normalize!r}")
    dimensions = _dimensions(params)
    body: dict[str, Any] = {"model": request.route.upstream_model, "input": inputs, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    op = Operation(Route.EMBEDDINGS, "feature-extraction", path_model=request.route.model)
    count = None if isinstance(inputs, str) else len(inputs)
    return _Features(op, body, count=count, dimensions=dimensions, normalize=normalize is not False)


class _Features(Translator):
    __slots__ = ("_count", "_dimensions", "_normalize")

    def __init__(
        self, upstream_op: Operation, body: Any, *, count: int | None, dimensions: int | None, normalize: bool
    ) -> None:
        super().__init__(upstream_op, body)
        self._count = count
        """How many inputs the client sent as a list; ``None`` for one string."""
        self._dimensions = dimensions
        self._normalize = normalize

    def response(self, document: Any) -> Any:
        vectors = _openai_vectors(document, 1 if self._count is None else self._count)
        _same_width(vectors)
        dimensions, out = self._dimensions, []
        for vector in vectors:
            if dimensions is not None and len(vector) > dimensions:
                vector = vector[:dimensions]
            if self._normalize:
                vector = _unit(vector)
            else:
                _norm(vector)  # still refuse non-numbers
            out.append(vector)
        return out[0] if self._count is None else out


# --- sentence-similarity on an OpenAI-compatible upstream ----------------------------------------


def similarity_via_embeddings(request: Request) -> Translator:
    """HF sentence-similarity → one ``/v1/embeddings`` call for ``[source, *sentences]``.

    The answer is ``[cosine(source, sentence), ...]`` in the order of ``sentences`` (``0.0`` against a zero
    vector).
    """
    document = request.document
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, dict):
        raise _invalid('sentence-similarity takes {"inputs": {"source_sentence": str, "sentences": [str]}}')
    source, sentences = inputs.get("source_sentence"), inputs.get("sentences")
    if not isinstance(source, str):
        raise _invalid("`inputs.source_sentence` must be a string")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise _invalid("`inputs.sentences` must be a list of strings")
    body = {"model": request.route.upstream_model, "input": [source, *sentences], "encoding_format": "float"}
    op = Operation(Route.EMBEDDINGS, "feature-extraction", path_model=request.route.model)
    return _Similarity(op, body, count=len(sentences) + 1)


class _Similarity(Translator):
    __slots__ = ("_count",)

    def __init__(self, upstream_op: Operation, body: Any, *, count: int) -> None:
        super().__init__(upstream_op, body)
        self._count = count

    def response(self, document: Any) -> Any:
        source, *others = _openai_vectors(document, self._count)
        source_norm, scores = _norm(source), []
        for vector in others:
            norm = _norm(vector)
            if len(vector) != len(source):
                raise bad_upstream("the embeddings have different lengths")
            dot = sum(map(operator.mul, source, vector))
            scores.append(dot / (source_norm * norm) if source_norm and norm else 0.0)
        return scores


def _openai_vectors(document: Any, count: int) -> list[Any]:
    """The ``count`` embeddings of an OpenAI ``list`` answer, in ``index`` order (base64 decoded)."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise bad_upstream('an embeddings answer must be an object with a "data" list')
    if len(data) != count:
        raise bad_upstream(f"expected {count} embeddings, got {len(data)}")
    vectors: list[Any] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise bad_upstream('"data" must hold embedding objects')
        index = item.get("index", position)
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise bad_upstream(f"bad or repeated embedding index {index!r}")
        embedding = item.get("embedding")
        if isinstance(embedding, str):
            embedding = _decode_base64(embedding)
        if not isinstance(embedding, list) or not embedding:
            raise bad_upstream("an embedding must be a non-empty list of numbers or base64 float32")
        vectors[index] = embedding
    return vectors


# --- vectors ---------------------------------------------------------------------------------------


def _norm(vector: list[Any]) -> float:
    """The L2 norm; raises :class:`UpstreamShapeError` unless ``vector`` holds finite numbers."""
    try:
        norm = math.hypot(*vector)
    except TypeError:
        raise bad_upstream("an embedding holds something other than numbers") from None
    if not math.isfinite(norm):
        raise bad_upstream("an embedding holds non-finite numbers")
    return norm


def _unit(vector: list[Any]) -> list[Any]:
    """``vector`` divided by its norm (the same list when it is already unit length, or all zeros)."""
    norm = _norm(vector)
    if norm == 0.0 or abs(norm - 1.0) <= _UNIT_TOLERANCE:
        return vector
    return [x / norm for x in vector]


def _same_width(vectors: list[Any]) -> None:
    width = len(vectors[0])
    if not width:
        raise bad_upstream("an embedding is empty")
    if any(len(v) != width for v in vectors):
        raise bad_upstream("the embeddings have different lengths")


def _encode_base64(vector: list[Any]) -> str:
    packed = array("f", vector)
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _decode_base64(text: str) -> list[float]:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_upstream("an embedding is not valid base64") from None
    if len(raw) % 4:
        raise bad_upstream("a base64 embedding is not a whole number of float32 values")
    values = array("f")
    values.frombytes(raw)
    if _BIG_ENDIAN:
        values.byteswap()
    return values.tolist()


# --- client input ----------------------------------------------------------------------------------


def _dimensions(document: dict[str, Any]) -> int | None:
    value = document.get("dimensions")
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise _invalid(f"`dimensions` must be a positive integer, got {value!r}")
    return value


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)
