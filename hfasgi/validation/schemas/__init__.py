"""JSON Schemas (draft 2020-12) of the request bodies the gateway validates before forwarding.

* ``ROUTE_SCHEMAS``: ``"chat"`` (``/v1/chat/completions``), ``"completions"`` (``/v1/completions``),
  ``"embeddings"`` (``/v1/embeddings``), ``"generate"`` (TGI ``/generate``, ``/generate_stream``, ``/``).
* ``TASK_SCHEMAS``: the JSON body of the task API (``/models/{id}``, ``/models/{id}/pipeline/{task}``)
  per Hugging Face task; ``"chat-completion"`` is the same object as ``ROUTE_SCHEMAS["chat"]``.
* ``BINARY_TASKS``: task → ``"image"``/``"audio"``/``"video"`` for tasks whose body may be raw media.

Written after ``@huggingface/tasks`` (the specs), TGI's router and what the real clients send
(huggingface_hub, @huggingface/inference, openai); where they differ the clients win (docs/hf_api.md
§5.2, §6, §8).

Unknown-field policy:

* The ROOT of every body, and every OpenAI object (messages, content parts, tools, tool calls,
  ``response_format``, ``stream_options``...), is open: vendor extensions pass (openai's
  ``extra_body``, huggingface_hub's ``**extra_body``, ``chat_template_kwargs``...).
* ``parameters`` of task and TGI bodies is closed (``additionalProperties: false``), and so are
  ``generate_parameters``/``generation_parameters``, ``target_size``, TGI ``grammar`` and the legacy
  ``options`` (``use_cache``, ``wait_for_model``, ``use_gpu``): a misspelt ``temprature`` is refused
  instead of silently ignored. Exception: the tasks whose huggingface_hub method merges
  provider-specific extras into the ``parameters`` it posts to a URL (automatic-speech-recognition,
  text-to-image, text-to-speech: ``extra_body=``; image-to-image: ``**kwargs``) keep it open;
  their known parameters are still typed.
* Known fields are always type-checked; optional ones accept ``null`` (openai and others send it for
  "not set"), except where the server itself refuses it (TGI's non-optional ``GenerateParameters``).
* ``inputs`` is required on task bodies, except that image tasks may name it ``image`` (legacy) and
  tabular tasks send ``table``.

Messages: unions are discriminated with ``if``/``then`` on ``role``/``type``, so an error names the
field at fault; every remaining ``anyOf`` carries ``"x-error"``, the message the engine shows for it.
"""

from __future__ import annotations

from typing import Any

from hfasgi.validation.schemas.media_tasks import BINARY_TASKS, MEDIA_TASKS
from hfasgi.validation.schemas.openai import chat_schema, completions_schema, embeddings_schema
from hfasgi.validation.schemas.text_tasks import TEXT_TASKS
from hfasgi.validation.schemas.tgi import generate_schema, text2text_generation_schema, text_generation_schema

__all__ = ["BINARY_TASKS", "ROUTE_SCHEMAS", "TASK_SCHEMAS"]

ROUTE_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat": chat_schema(),
    "completions": completions_schema(),
    "embeddings": embeddings_schema(),
    "generate": generate_schema(),
}

TASK_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat-completion": ROUTE_SCHEMAS["chat"],
    "text-generation": text_generation_schema(),
    "text2text-generation": text2text_generation_schema(),
    **TEXT_TASKS,
    **MEDIA_TASKS,
}
