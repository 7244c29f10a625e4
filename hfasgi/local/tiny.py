"""A tiny random Llama model that ``transformers serve`` can load, built fully offline in about a second.

``hfasgi local prepare-tiny DIR`` writes one; the integration tests serve one. The build is deterministic:
the tokenizer is trained on a fixed corpus and the weights come from a fixed seed, so two builds give
identical files. The model's output is junk, but greedy decoding makes it repeatable, which is all a smoke
test needs. Needs the ``[local]`` extra (torch, transformers, tokenizers); imported only when called.

``tests/integration/conftest.py`` caches built models by the source of ``tests/integration/make_tiny_model.py``,
which records this file's SHA-256: change this file, then update ``BUILDER_SHA256`` there
(``tests/local/test_prepare.py`` fails until you do).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SEED", "SPECIAL_TOKENS", "build_tiny_llama"]

SEED = 1234
"""``torch.manual_seed`` used before the weights are initialised."""

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Special tokens, in id order (0, 1, 2)."""

INIT_RANGE = 0.5
"""Weight init std: large enough that the layers, not the tied embeddings, decide the next token."""

VOCAB_SIZE = 320
"""256 byte tokens, the specials, and a few dozen merges."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML; message content may be a string or a list of ``{"type": "text", "text": ...}`` parts."""

_CORPUS = [
    "Hello! How can I help you today?",
    "The capital of France is Paris.",
    "Hugging Face hosts models, datasets and spaces.",
    "An ASGI gateway forwards requests to an inference server.",
    "The quick brown fox jumps over the lazy dog.",
    "Streaming responses arrive as server-sent events.",
    "Tokens are generated one after another, greedily when the temperature is zero.",
    "What is the answer? The answer is forty-two.",
    "user assistant system",
    "one two three four five six seven eight nine ten",
]


def build_tiny_llama(out_dir: Path) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` with a ChatML byte-level BPE tokenizer to ``out_dir``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    eos, bos = "<|im_end|>", "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        pad_token=bos,
        unk_token=bos,
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=INIT_RANGE,
        tie_word_embeddings=True,
        bos_token_id=bpe.token_to_id(bos),
        eos_token_id=bpe.token_to_id(eos),
        pad_token_id=bpe.token_to_id(bos),
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    # Keep the output printable so streamed and whole decodes agree: with tied embeddings a zero row is a zero
    # logit, which greedy decoding never picks here. Lone UTF-8 bytes, control codes and specials (which
    # decode to "") are silenced; eos stays possible.
    silent = [i for i in range(config.vocab_size) if i != config.eos_token_id and not _printable(bpe.decode([i]))]
    embeddings = model.get_input_embeddings().weight
    assert isinstance(embeddings, torch.Tensor)
    with torch.no_grad():
        embeddings[silent] = 0.0
    model.generation_config.do_sample = False  # greedy unless a request says otherwise
    model.save_pretrained(out_dir)
    return out_dir


def _printable(text: str) -> bool:
    """Whether ``text`` is non-empty printable ASCII (newlines allowed): no lone UTF-8 bytes, no control codes."""
    return bool(text) and all(c == "\n" or " " <= c <= "~" for c in text)
