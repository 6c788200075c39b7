"""A small causal language model, trained here on the movie-review sentences, for Captum's LLM
attribution (`LLMAttribution`, `LLMGradientAttribution`; see attrib_core/methods/llm.py).

The tokenizer is a byte-level BPE trained with `tokenizers` on the training split of the text
workload; the model is a tiny `LlamaForCausalLM` from a `LlamaConfig` (rotary positions, so
prompts longer than its training context still run), trained, seeded and cached here on the
training sentences joined by <eos>. Held-out perplexity is recorded in `info`.

Prompt length is part of the input, so each length is a workload of its own, all sharing one
trained model: `reviews_lm_<length>` for PROMPT_LENGTHS. A prompt is held-out sentences joined
into one text and cut to exactly `length` tokens, at a place where decoding and encoding again
gives the same tokens (what `TextTokenInput` does with the text). The tensor view of the model
(`NextTokenLogits`: token ids -> the next token's logits) is what ordinary methods, the hardware
limit and the fidelity curves call; the LLM methods reach the Hugging Face model and its
tokenizer through it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attrib_core.cache import stable_hash
from attrib_core.models.hf import NextTokenLogits
from attrib_core.workloads.base import WORKLOADS, Workload, register_workload, trained_tokenizer, trained_weights

LM_RECIPE_VERSION = 1
PROMPT_LENGTHS = (16, 32, 64, 128, 256)
VOCABULARY_SIZE = 2000
PAD, EOS = "<pad>", "<eos>"
PAD_ID, EOS_ID = 0, 1
CONTEXT = 64  # tokens per training window
N_PROMPTS = 4
CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "pad_token_id": PAD_ID,
    "eos_token_id": EOS_ID,
    "bos_token_id": None,
    "tie_word_embeddings": True,
}
EPOCHS, BATCH_SIZE, LEARNING_RATE, SEED = 3, 32, 3e-3, 0


def train_bpe(texts: list[str], vocabulary_size: int = VOCABULARY_SIZE) -> Any:
    """A byte-level BPE tokenizer (GPT-2's scheme) as a `transformers` fast tokenizer."""
    return as_transformers_tokenizer(bpe_tokenizer(texts, vocabulary_size))


def as_transformers_tokenizer(tokenizer: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS)


def bpe_tokenizer(texts: list[str], vocabulary_size: int = VOCABULARY_SIZE) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def token_stream(tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """All sentences' tokens, each followed by <eos>, as one long sequence."""
    ids: list[int] = []
    for encoded in tokenizer(texts)["input_ids"]:
        ids += [*encoded, EOS_ID]
    return torch.as_tensor(ids, dtype=torch.long)


def windows(stream: torch.Tensor, context: int = CONTEXT) -> torch.Tensor:
    n = (len(stream) - 1) // context
    return stream[: n * context + 1].unfold(0, context + 1, context)  # (n, context + 1), overlapping by one


def train_lm(model: nn.Module, train: torch.Tensor) -> None:
    """Next-token cross-entropy, AdamW, shuffled windows, seeded, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(SEED)
        optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
        steps = EPOCHS * math.ceil(len(train) / BATCH_SIZE)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(order), BATCH_SIZE):
                batch = train[order[start : start + BATCH_SIZE]]
                logits = model(input_ids=batch[:, :-1], use_cache=False).logits
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None


def perplexity(model: nn.Module, held_out: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=held_out[:, :-1], use_cache=False).logits
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), held_out[:, 1:].flatten())
    return float(loss.exp())


@dataclass(frozen=True)
class TrainedLM:
    model: NextTokenLogits
    held_out_texts: list[str]
    weights: str
    info: dict[str, Any]


@functools.cache
def trained_lm() -> TrainedLM:
    """Tokenizer and model, trained once per process (the weights are cached on disk)."""
    from sklearn.model_selection import train_test_split
    from transformers import LlamaConfig, LlamaForCausalLM

    from attrib_core.workloads.movie_reviews import load_movie_reviews
    from attrib_core.workloads.text import TEST_SIZE

    texts = list(load_movie_reviews().texts)
    train_texts, test_texts = train_test_split(texts, test_size=TEST_SIZE, random_state=0)
    tokenizer = as_transformers_tokenizer(
        trained_tokenizer(
            "reviews_lm",
            {"texts": stable_hash(train_texts), "size": VOCABULARY_SIZE, "special": [PAD, EOS], "version": 1},
            lambda: bpe_tokenizer(train_texts),
        )
    )
    config = LlamaConfig(vocab_size=len(tokenizer), **CONFIG)
    torch.manual_seed(SEED)
    lm = LlamaForCausalLM(config).eval()
    train = windows(token_stream(tokenizer, train_texts))
    recipe = {
        "config": CONFIG,
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "seed": SEED,
        "context": CONTEXT,
        "version": LM_RECIPE_VERSION,
        "torch": torch.__version__,
        "vocabulary": stable_hash(tokenizer.get_vocab()),
    }
    weights = trained_weights(lm, "reviews_lm", recipe, lambda m: train_lm(m, train))
    held_out = windows(token_stream(tokenizer, test_texts))
    info = {
        "held_out_perplexity": perplexity(lm, held_out),
        "uniform_perplexity": len(tokenizer),  # a model that learned nothing
        "n_train_windows": len(train),
        "context": CONTEXT,
        "vocabulary_size": len(tokenizer),
        "config": {k: v for k, v in CONFIG.items() if v is not None},
    }
    return TrainedLM(NextTokenLogits(lm, tokenizer).eval(), test_texts, weights, info)


def round_trips(tokenizer: Any, ids: list[int]) -> bool:
    """Whether decoding `ids` and encoding the text again gives `ids` (what TextTokenInput sees)."""
    return tokenizer.encode(tokenizer.decode(ids)) == ids


def prompts(tokenizer: Any, texts: list[str], length: int, n: int = N_PROMPTS) -> torch.Tensor:
    """(n, length) prompts: consecutive held-out sentences joined by spaces, cut to `length`
    tokens where the cut text encodes back to the same tokens; each starts one sentence later."""
    rows: list[list[int]] = []
    start = 0
    while len(rows) < n:
        if start >= len(texts):
            raise ValueError(f"no {n} prompts of {length} tokens round-trip through the tokenizer")
        joined, end = "", start
        while len(tokenizer.encode(joined)) < length + 8 and end < len(texts):
            joined = f"{joined} {texts[end]}".strip()
            end += 1
        ids = tokenizer.encode(joined)[:length]
        if len(ids) == length and round_trips(tokenizer, ids):
            rows.append(ids)
            start = end  # the next prompt starts with new sentences
        else:
            start += 1
    return torch.as_tensor(rows, dtype=torch.long)


def prompt_workload(lm: TrainedLM, length: int, name: str | None = None) -> Workload:
    """`length`-token prompts; layer methods explain the token embeddings; each token is a feature."""
    name = name or f"reviews_lm_{length}"
    spec = WORKLOADS.get(name) if name in WORKLOADS else None
    inputs = prompts(lm.model.tokenizer, lm.held_out_texts, length)
    with torch.no_grad():
        targets = lm.model(inputs).argmax(1)  # the next token the model predicts
    return Workload(
        name=name,
        model=lm.model,
        inputs=inputs,
        targets=targets,
        baseline=torch.full((1, length), PAD_ID, dtype=torch.long),
        background=inputs[:2],
        feature_mask=torch.arange(length)[None],
        layer_name="model.model.embed_tokens",
        neuron=(0, 0),
        output_name="model.lm_head",
        weights=lm.weights,
        description=spec.description if spec else name,
        method_defaults=spec.method_defaults if spec else {},
        info={
            **lm.info,
            "prompt_length": length,
            "example_tokens": [lm.model.tokenizer.decode([i]).strip() or "_" for i in inputs[0].tolist()],
            "example_prompt": lm.model.tokenizer.decode(inputs[0].tolist()),
        },
    )


for _length in PROMPT_LENGTHS:
    register_workload(
        f"reviews_lm_{_length}",
        f"tiny Llama trained here on movie-review sentences; {_length}-token prompts, next tokens explained",
        input_kind="tokens",
        layer="model.model.embed_tokens",
        method_defaults={"Occlusion": {"sliding_window_shapes": (3,), "strides": (1,)}},
        generates_text=True,
    )(functools.partial(lambda length: prompt_workload(trained_lm(), length), _length))
