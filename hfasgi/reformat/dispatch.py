"""Which translation serves a request: the client's operation × the upstream's kind.

=====================================  ====================  ===========================================
client                                 upstream kind         translation
=====================================  ====================  ===========================================
chat, completions, embeddings          OpenAI-speaking       ``openai_quirks.openai_quirks``
``/v1/completions``                    router, serverless    ``generation.completions_to_tgi``
``/v1/embeddings``                     router, serverless,   ``embeddings.embeddings_to_features``
                                       tgi (TEI)
``/generate``, ``/generate_stream``    openai                ``generation.tgi_to_completions``
``/generate``, ``/generate_stream``    router, serverless    ``generation.tgi_to_task``
``/`` (TGI compat)                     openai                ``generation.tgi_to_completions``
task text-generation                   openai                ``generation.tgi_to_completions``
task feature-extraction                openai                ``embeddings.features_to_embeddings``
task sentence-similarity               openai                ``embeddings.similarity_via_embeddings``
task summarization, translation, …     openai, or a catalog  ``chat_tasks.task_via_chat``
                                       chat model
any other task                         router, serverless,   ``task_shapes.task_shapes`` (the wire shapes
                                       tgi                   clients need, hf_api.md §8.6)
=====================================  ====================  ===========================================

Everything else (TGI routes on TGI, ``/v1/models``, ``/info``) goes through untranslated.
"""

from __future__ import annotations

from hfasgi.forwarding.upstream import UpstreamKind
from hfasgi.operations import Route
from hfasgi.reformat.base import Request, Translator, unsupported
from hfasgi.reformat.chat_tasks import CHAT_TASKS, task_via_chat
from hfasgi.reformat.embeddings import embeddings_to_features, features_to_embeddings, similarity_via_embeddings
from hfasgi.reformat.generation import completions_to_tgi, tgi_to_completions, tgi_to_task
from hfasgi.reformat.openai_quirks import openai_quirks
from hfasgi.reformat.task_shapes import TASKS_WITH_SHAPES, task_shapes

__all__ = ["choose"]

_OPENAI = UpstreamKind.OPENAI
_HF_TASK_KINDS = (UpstreamKind.ROUTER, UpstreamKind.SERVERLESS)


def choose(request: Request) -> Translator | None:
    """The translator for ``request``, or ``None`` when the upstream speaks the client's dialect as it is.

    Raises a 400 :class:`~hfasgi.errors.GatewayError` (``unsupported_operation``) when the upstream
    cannot serve the request in any dialect.
    """
    route = request.op.route
    kind = request.route.upstream.kind
    if route is Route.CHAT:
        return openai_quirks(request)
    if route is Route.COMPLETIONS:
        return completions_to_tgi(request) if kind in _HF_TASK_KINDS else openai_quirks(request)
    if route is Route.EMBEDDINGS:
        return openai_quirks(request) if kind is _OPENAI else embeddings_to_features(request)
    if route is Route.GENERATE or route is Route.GENERATE_STREAM:
        if kind is _OPENAI:
            return tgi_to_completions(request)
        return tgi_to_task(request) if kind in _HF_TASK_KINDS else None
    if route is Route.COMPAT_GENERATE:
        return tgi_to_completions(request) if kind is _OPENAI else None
    if route is Route.TASK:
        return _task(request, kind)
    return None


def _task(request: Request, kind: UpstreamKind) -> Translator | None:
    task = request.task
    if task is None:
        return None  # a model of unknown task: it goes to the upstream's task route as it is
    chat_model = request.route.task == "chat-completion" and task != "chat-completion"
    if kind is _OPENAI and not chat_model:
        if task == "text-generation":
            return tgi_to_completions(request)
        if task == "feature-extraction":
            return features_to_embeddings(request)
        if task == "sentence-similarity":
            return similarity_via_embeddings(request)
    if kind is _OPENAI or chat_model:
        if task in CHAT_TASKS or task.startswith("translation_"):  # translation_en_to_fr names the pair
            return task_via_chat(request)
        raise unsupported(
            f"The {task!r} task needs a model that serves it: upstream {request.route.upstream.name!r} "
            f"speaks chat only; map the model to a {task} model on a Hugging Face upstream in the catalog"
        )
    return task_shapes(request) if task in TASKS_WITH_SHAPES else None
