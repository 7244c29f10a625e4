"""Task API bodies of the image, audio and video tasks, and which of them may come as raw bytes.

The JSON form of a binary-input task is ``{"inputs": "<base64 or URL>", "parameters": {...}}``
(huggingface_hub sends it as soon as there is a parameter, hf_api.md §5.2, §8.10); image tasks may
name the picture ``image`` instead, as the legacy API accepted (§2.2, api-inference-community
``normalize_payload_image``). The tasks whose huggingface_hub method merges provider-specific extras
into ``parameters`` and can post them to a URL (hf-inference: ``extra_body=`` for ASR, text-to-image,
text-to-speech; ``**kwargs`` for image-to-image) keep ``parameters`` open. (text-to-video and
image-to-video have such extras too, but huggingface_hub refuses them on a URL: closed.)
"""

from __future__ import annotations

import copy
from typing import Any

from hfasgi.validation.schemas.common import (
    GENERATION_PARAMETERS,
    body,
    boolean,
    closed,
    enum,
    generation_parameters,
    integer,
    number,
    obj,
    string,
    strings,
)

__all__ = ["BINARY_TASKS", "MEDIA_TASKS"]

Schema = dict[str, Any]

_ENCODED: Schema = {"type": "string"}
"""A binary input in a JSON body: base64 data (or a URL, which some servers fetch)."""

BINARY_TASKS: dict[str, str] = {
    "audio-classification": "audio",
    "audio-to-audio": "audio",
    "automatic-speech-recognition": "audio",
    "depth-estimation": "image",
    "image-classification": "image",
    "image-segmentation": "image",
    "image-to-image": "image",
    "image-to-text": "image",
    "image-to-video": "image",
    "object-detection": "image",
    "video-classification": "video",
}
"""Tasks whose body may be the raw media bytes (and then has no parameters).

Not listed: the zero-shot image tasks (``candidate_labels`` is required, so always JSON), VQA and
document QA (image *and* question), and image-text-to-image/-video (a prompt is needed).
"""


def _image_body(title: str, parameters: Schema, **keywords: Any) -> Schema:
    return body(
        title,
        dict(_ENCODED),
        parameters,
        required=(),
        root={"image": dict(_ENCODED)},
        one_of_fields=("inputs", "image"),
        error="needs the image (base64) as `inputs`",
        **keywords,
    )


def _classification() -> Schema:
    return {"function_to_apply": enum("sigmoid", "softmax", "none"), "top_k": integer(minimum=1)}


def _target_size() -> Schema:
    size = {"width": integer(null=False, minimum=1), "height": integer(null=False, minimum=1)}
    return closed(size, required=("width", "height"), null=True)


def _diffusion(*, seed: bool = True, prompt: bool = True) -> Schema:
    out: Schema = {
        "guidance_scale": number(minimum=0),
        "negative_prompt": string(),
        "num_inference_steps": integer(minimum=1),
    }
    if prompt:
        out["prompt"] = string()
    if seed:
        out["seed"] = integer()
    return out


def _unit() -> Schema:
    return number(minimum=0, maximum=1)


def _zero_shot_image(title: str, extra: Schema) -> Schema:
    parameters = {"candidate_labels": strings(null=False, minItems=1), **extra}
    return _image_body(title, parameters, parameters_required=("candidate_labels",))


def _question_on_image(title: str, parameters: Schema, *, flat: bool) -> Schema:
    """``inputs: {"image", "question"}``; with ``flat``, also huggingface_hub's VQA form
    ``{"inputs": "<base64>", "question": ..., "image": ...}`` (question at the root)."""
    pair = obj({"image": _ENCODED, "question": {"type": "string"}}, required=("image", "question"))
    if not flat:
        return body(title, pair, parameters)
    pair["type"] = ["object", "string"]
    root = {"question": {"type": "string"}, "image": dict(_ENCODED)}
    string_inputs = {"properties": {"inputs": {"type": "string"}}, "required": ["inputs"]}
    return body(title, pair, parameters, root=root, allOf=[{"if": string_inputs, "then": {"required": ["question"]}}])


def _word_box() -> Schema:
    # a word, or its [x0, y0, x1, y1] box (the spec writes maxLength/minLength for the array bounds)
    return {"type": ["string", "array"], "items": {"type": "number"}, "minItems": 4, "maxItems": 4}


def _speech_parameters() -> Schema:
    # huggingface_hub sends the generation knobs flat in ``parameters``; the spec nests them.
    return {**copy.deepcopy(GENERATION_PARAMETERS), "generation_parameters": generation_parameters()}


MEDIA_TASKS: dict[str, Schema] = {
    "audio-classification": body("AudioClassificationRequest", _ENCODED, _classification()),
    "audio-to-audio": body("AudioToAudioRequest", _ENCODED, {}),
    "automatic-speech-recognition": body(
        "AutomaticSpeechRecognitionRequest",
        _ENCODED,
        {
            "return_timestamps": {"type": ["boolean", "string", "null"], "enum": [True, False, "word", "char", None]},
            "generation_parameters": generation_parameters(),
        },
        open_parameters=True,
    ),
    "depth-estimation": _image_body("DepthEstimationRequest", {}),
    "image-classification": _image_body("ImageClassificationRequest", _classification()),
    "image-segmentation": _image_body(
        "ImageSegmentationRequest",
        {
            "mask_threshold": _unit(),
            "overlap_mask_area_threshold": _unit(),
            "subtask": enum("instance", "panoptic", "semantic"),
            "threshold": _unit(),
        },
    ),
    "image-to-image": _image_body(
        "ImageToImageRequest", {**_diffusion(), "target_size": _target_size()}, open_parameters=True
    ),
    "image-to-text": _image_body(
        "ImageToTextRequest",
        {"max_new_tokens": integer(minimum=1), "generation_parameters": generation_parameters()},
    ),
    "image-to-video": _image_body(
        "ImageToVideoRequest",
        {**_diffusion(), "num_frames": number(minimum=1), "target_size": _target_size()},
    ),
    "image-text-to-image": _image_body("ImageTextToImageRequest", {**_diffusion(), "target_size": _target_size()}),
    "image-text-to-video": _image_body(
        "ImageTextToVideoRequest",
        {**_diffusion(), "num_frames": number(minimum=1), "target_size": _target_size()},
    ),
    "object-detection": _image_body("ObjectDetectionRequest", {"threshold": _unit()}),
    "zero-shot-image-classification": _zero_shot_image(
        "ZeroShotImageClassificationRequest", {"hypothesis_template": string()}
    ),
    "zero-shot-object-detection": _zero_shot_image("ZeroShotObjectDetectionRequest", {}),
    "visual-question-answering": _question_on_image(
        "VisualQuestionAnsweringRequest", {"top_k": integer(minimum=1)}, flat=True
    ),
    "document-question-answering": _question_on_image(
        "DocumentQuestionAnsweringRequest",
        {
            "doc_stride": integer(minimum=0),
            "handle_impossible_answer": boolean(),
            "lang": string(),
            "max_answer_len": integer(minimum=1),
            "max_seq_len": integer(minimum=1),
            "max_question_len": integer(minimum=1),
            "top_k": integer(minimum=1),
            "word_boxes": {"type": ["array", "null"], "items": _word_box()},
        },
        flat=False,
    ),
    "video-classification": body(
        "VideoClassificationRequest",
        _ENCODED,
        {**_classification(), "num_frames": integer(minimum=1), "frame_sampling_rate": integer(minimum=1)},
    ),
    "text-to-image": body(
        "TextToImageRequest",
        {"type": "string"},
        {
            **_diffusion(prompt=False),
            "width": integer(minimum=1),
            "height": integer(minimum=1),
            "scheduler": string(),
        },
        open_parameters=True,
    ),
    "text-to-video": body(
        "TextToVideoRequest",
        {"type": "string"},
        {
            **_diffusion(prompt=False),
            "negative_prompt": {"type": ["array", "string", "null"], "items": {"type": "string"}},
            "num_frames": number(minimum=1),
        },
    ),
    "text-to-speech": body("TextToSpeechRequest", {"type": "string"}, _speech_parameters(), open_parameters=True),
    "text-to-audio": body("TextToAudioRequest", {"type": "string"}, {"generation_parameters": generation_parameters()}),
}
