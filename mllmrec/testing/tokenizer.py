"""An offline byte-level BPE tokenizer shaped like Qwen2's, for tiny test and demo models.

Trained in well under a second on a built-in corpus, so nothing is downloaded. The special tokens
and chat template follow Qwen2-VL's, so the same rendering and pooling code paths run as with a
real Qwen model.
"""

from __future__ import annotations

import json
import random

# Qwen2-VL's special tokens, in Qwen's order; `<image>` is the composed backbone's placeholder.
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
COMPOSED_IMAGE_TOKEN = "<image>"

# Qwen2's chat template reduced to string contents (which is how mllmrec renders prompts).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "item note product title description compress this into one word image picture photo text "
    "red green blue yellow purple orange black white circle square triangle star stripes dots "
    "cotton leather wool metal wooden plastic glass ceramic vintage modern classic sporty elegant "
    "shirt lamp chair mug bag shoe watch poster book toy kettle vase sofa desk table bottle "
    "drama comedy action thriller romance documentary horror animation adventure fantasy crime "
    "the a an of and with for in on by from to is are was were it its this that these those "
    "system assistant helpful you are user users like likes bought watched movie film year genre brand style colour color shape"
).split()


def _corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        if rng.random() < 0.3:
            words.append(str(rng.randint(1900, 2030)))
        lines.append(" ".join(words) + rng.choice([".", ":", '"', "\n", "'", ",", "!", "?", " {", "}"]))
    return lines


def build_tokenizer(vocab_size: int = 1024, extra_special_tokens: tuple[str, ...] = ()):
    """Return a left-padding `Qwen2Tokenizer` trained offline, with Qwen's specials and chat template.

    `<|endoftext|>` is the pad and eos token, as in Qwen2-VL. Pass `extra_special_tokens` (e.g.
    `("<image>",)`) for a composed model's placeholder.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[QWEN_SPECIALS[0]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    # Qwen2Tokenizer wants merges as tuples; a list of "a b" strings fails deep in tokenizers.
    merges = [tuple(m) if not isinstance(m, str) else tuple(m.split(" ")) for m in model["merges"]]
    qt = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        padding_side="left",
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    specials = list(QWEN_SPECIALS[1:]) + [t for t in extra_special_tokens if t not in QWEN_SPECIALS]
    qt.add_special_tokens({"additional_special_tokens": specials})
    qt.chat_template = CHAT_TEMPLATE
    return qt
