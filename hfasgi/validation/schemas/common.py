"""Building blocks shared by the route and task schemas: typed fields, ``options``, generation knobs.

Every helper returns a *fresh* dict, so no two schemas share a mutable node. Schemas are inlined
(no ``$ref``): the engine reads ``x-error`` by walking an error's schema path through the dicts.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "DRAFT",
    "GENERATION_PARAMETERS",
    "TRUNCATION",
    "array",
    "body",
    "boolean",
    "closed",
    "enum",
    "generation_parameters",
    "integer",
    "nullable",
    "number",
    "obj",
    "options",
    "string",
    "strings",
]

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

TRUNCATION = ("do_not_truncate", "longest_first", "only_first", "only_second")


def nullable(schema: Schema) -> Schema:
    """``schema`` that also accepts ``null`` (an explicit "not set" from clients that send it)."""
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    kind = out.get("type")
    if kind is None:
        return out
    kinds = [kind] if isinstance(kind, str) else list(kind)
    if "null" not in kinds:
        kinds.append("null")
    out["type"] = kinds
    return out


def string(*, null: bool = True, **keywords: Any) -> Schema:
    """A string field (nullable unless ``null=False``)."""
    schema: Schema = {"type": "string", **keywords}
    return nullable(schema) if null else schema


def boolean(*, null: bool = True) -> Schema:
    """A boolean field (nullable unless ``null=False``)."""
    return nullable({"type": "boolean"}) if null else {"type": "boolean"}


def integer(*, null: bool = True, **keywords: Any) -> Schema:
    """An integer field with optional ``minimum``/``maximum``... keywords."""
    schema: Schema = {"type": "integer", **keywords}
    return nullable(schema) if null else schema


def number(*, null: bool = True, **keywords: Any) -> Schema:
    """A number field with optional range keywords."""
    schema: Schema = {"type": "number", **keywords}
    return nullable(schema) if null else schema


def enum(*values: Any, null: bool = True) -> Schema:
    """One of ``values`` (all strings here), typed so a wrong type says "must be a string"."""
    schema: Schema = {"type": "string", "enum": list(values)}
    return nullable(schema) if null else schema


def array(items: Schema, *, null: bool = True, **keywords: Any) -> Schema:
    """A list of ``items``."""
    schema: Schema = {"type": "array", "items": items, **keywords}
    return nullable(schema) if null else schema


def strings(*, null: bool = True, **keywords: Any) -> Schema:
    """A list of strings."""
    return array({"type": "string"}, null=null, **keywords)


def obj(properties: Schema, *, required: tuple[str, ...] = (), null: bool = False, **keywords: Any) -> Schema:
    """An *open* object: unknown keys are allowed, known ones are typed."""
    schema: Schema = {"type": "object", "properties": properties, **keywords}
    if required:
        schema["required"] = list(required)
    return nullable(schema) if null else schema


def closed(properties: Schema, *, required: tuple[str, ...] = (), null: bool = False, **keywords: Any) -> Schema:
    """A *closed* object (``additionalProperties: false``): a misspelt key is refused."""
    return obj(properties, required=required, null=null, additionalProperties=False, **keywords)


def options() -> Schema:
    """The legacy serverless ``options`` object (§2.2): cache and loading switches, nothing else."""
    return closed({"use_cache": boolean(), "wait_for_model": boolean(), "use_gpu": boolean()}, null=True)


def _token_ids() -> Schema:
    return {"type": ["integer", "array", "null"], "items": {"type": "integer"}}


# The spec's GenerationParameters (common-definitions.json), then the transformers ``generate()``
# knobs people pass the most. Kept closed, so a misspelt knob is refused instead of ignored.
GENERATION_PARAMETERS: dict[str, Schema] = {
    "temperature": number(minimum=0),
    "top_k": integer(minimum=0),
    "top_p": number(minimum=0, maximum=1),
    "typical_p": number(minimum=0, maximum=1),
    "epsilon_cutoff": number(minimum=0, maximum=1),
    "eta_cutoff": number(minimum=0, maximum=1),
    "max_length": integer(minimum=0),
    "max_new_tokens": integer(minimum=0),
    "min_length": integer(minimum=0),
    "min_new_tokens": integer(minimum=0),
    "do_sample": boolean(),
    "early_stopping": {"type": ["boolean", "string", "null"], "enum": [True, False, "never", None]},
    "num_beams": integer(minimum=1),
    "num_beam_groups": integer(minimum=1),
    "penalty_alpha": number(minimum=0),
    "use_cache": boolean(),
    # transformers GenerationConfig extras
    "min_p": number(minimum=0, maximum=1),
    "repetition_penalty": number(exclusiveMinimum=0),
    "encoder_repetition_penalty": number(exclusiveMinimum=0),
    "length_penalty": number(),
    "no_repeat_ngram_size": integer(minimum=0),
    "encoder_no_repeat_ngram_size": integer(minimum=0),
    "diversity_penalty": number(),
    "num_return_sequences": integer(minimum=1),
    "max_time": number(minimum=0),
    "stop_strings": {"type": ["string", "array", "null"], "items": {"type": "string"}},
    "bad_words_ids": array({"type": "array", "items": {"type": "integer"}}),
    "suppress_tokens": array({"type": "integer"}),
    "begin_suppress_tokens": array({"type": "integer"}),
    "renormalize_logits": boolean(),
    "remove_invalid_values": boolean(),
    "forced_bos_token_id": integer(),
    "forced_eos_token_id": _token_ids(),
    "guidance_scale": number(),
    "pad_token_id": integer(),
    "bos_token_id": integer(),
    "eos_token_id": _token_ids(),
    "decoder_start_token_id": _token_ids(),
}


def generation_parameters() -> Schema:
    """``generate_parameters`` / ``generation_parameters``: transformers ``generate()`` options, closed."""
    return closed(copy.deepcopy(GENERATION_PARAMETERS), null=True)


def body(
    title: str,
    inputs: Schema,
    parameters: Schema,
    *,
    required: tuple[str, ...] = ("inputs",),
    parameters_required: tuple[str, ...] = (),
    open_parameters: bool = False,
    root: Schema | None = None,
    one_of_fields: tuple[str, ...] = (),
    error: str = "",
    **keywords: Any,
) -> Schema:
    """A task API body ``{"inputs", "parameters", "options"}``; the root stays open.

    ``parameters`` is closed unless ``open_parameters`` (tasks whose official client merges
    provider-specific extras into ``parameters``); ``parameters_required`` makes it mandatory.
    ``one_of_fields`` requires at least one of those root fields (``error`` is then the message).
    """
    params: Schema = {"type": "object", "properties": parameters}
    if not open_parameters:
        params["additionalProperties"] = False
    if parameters_required:
        params["required"] = list(parameters_required)
        required = (*required, "parameters")
    else:
        params = nullable(params)
    properties: Schema = {"inputs": inputs, "parameters": params, "options": options(), **(root or {})}
    schema: Schema = {"$schema": DRAFT, "title": title, "type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if one_of_fields:
        schema["anyOf"] = [{"required": [name]} for name in one_of_fields]
        schema["x-error"] = error or "needs one of " + ", ".join(f"`{name}`" for name in one_of_fields)
    schema.update(keywords)
    return copy.deepcopy(schema)  # callers may pass shared fragments
