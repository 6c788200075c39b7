"""The Transformer text workloads: a small BERT-style encoder, trained here, on the movie-review
sentences of the text workload (same polar sentences, same 80/20 split as `sentiment_cnn`).

The tokenizer is a WordPiece vocabulary trained with `tokenizers` on the training split only;
the model is `BertForSequenceClassification` built from a `BertConfig` (no download), trained
here, seeded, and cached. Each sentence is [CLS] + its word pieces, cut or padded with [PAD] to
SEQUENCE_LENGTH. The model has no attention mask: [PAD] is a token it was trained on, so the
all-[PAD] reference (after [CLS], as in Captum's BERT tutorial) is an input it knows.

Which layer a layer method explains is part of the workload contract (`Workload.layer_name`),
so the encoder's layers are workloads of their own, sharing one trained model:

- `sentiment_bert`: token ids; layer methods explain the embeddings (`model.bert.embeddings`)
  and perturbation methods remove tokens (one feature per token);
- `sentiment_bert_layer<k>`: the same model from its word embeddings on (`FromWordEmbeddings`),
  so LayerConductance, which interpolates its inputs, has floats to interpolate; layer methods
  explain encoder layer k. The cell key then names the layer, with no knob for it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attrib_core.cache import stable_hash
from attrib_core.workloads.base import WORKLOADS, Workload, register_workload, trained_tokenizer, trained_weights

BERT_RECIPE_VERSION = 1
SEQUENCE_LENGTH = 48  # word pieces with [CLS]; 90% of the training sentences fit, 98% within 52
VOCABULARY_SIZE = 8000
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, CLS_ID = 0, 2
N_LAYERS = 2
N_EXPLAINED = 64
N_BACKGROUND = 8
# Chosen on the held-out split (there is no third split): vocabulary 4000 or 8000, learning rate
# 1e-3 or 5e-4, 1 to 6 epochs: it peaks at 2 epochs and then overfits 7,338 sentences. With 2
# epochs, five tokenizer trainings (each breaks frequency ties its own way, so the first one on
# a machine is cached) gave 0.795 to 0.814 (docs/measurements/llm.md).
CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": N_LAYERS,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": SEQUENCE_LENGTH,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "num_labels": 2,
}
EPOCHS, BATCH_SIZE, LEARNING_RATE, WEIGHT_DECAY, SEED = 2, 32, 5e-4, 0.01, 0


def train_wordpiece(texts: list[str], vocabulary_size: int = VOCABULARY_SIZE) -> Any:
    """A lower-casing WordPiece tokenizer (BERT's normaliser and pre-tokeniser) trained on `texts`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocabulary_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2
    )
    tokenizer.train_from_iterator(texts, trainer)
    if [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS[:3]] != [PAD_ID, 1, CLS_ID]:
        raise RuntimeError(f"the trained tokenizer did not put {SPECIAL_TOKENS[:3]} at ids 0, 1, 2")
    return tokenizer


def encode(tokenizer: Any, texts: list[str], length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """(N, length) int64: [CLS], the word pieces (cut to fit), then [PAD]."""
    out = np.full((len(texts), length), PAD_ID, dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        ids = [CLS_ID, *encoding.ids[: length - 1]]
        out[row, : len(ids)] = ids
    return out


def decode(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    """The tokens up to the last non-[PAD] one, [CLS] included (it is a feature like the others)."""
    tokens = [tokenizer.id_to_token(int(i)) for i in ids]
    while tokens and tokens[-1] == "[PAD]":
        tokens.pop()
    return tokens


@dataclass(frozen=True)
class TrainedBert:
    model: torch.nn.Module  # attrib_core.models.hf.Logits over BertForSequenceClassification
    tokenizer: Any
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    weights: str
    info: dict[str, Any]


def train_bert(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    """AdamW with weight decay, shuffled minibatches, seeded, one thread (reproducible)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(SEED)
        inputs, labels = torch.as_tensor(x), torch.as_tensor(y)
        optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start : start + BATCH_SIZE]
                loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None


@functools.cache
def trained_bert() -> TrainedBert:
    """Tokenizer and model, trained once per process (the weights are cached on disk)."""
    from sklearn.model_selection import train_test_split
    from transformers import BertConfig, BertForSequenceClassification

    from attrib_core.models.hf import Logits
    from attrib_core.models.small import accuracy
    from attrib_core.workloads.movie_reviews import load_movie_reviews
    from attrib_core.workloads.text import NEUTRAL_MARGIN, TEST_SIZE

    reviews = load_movie_reviews()
    polar = np.abs(reviews.ratings) >= NEUTRAL_MARGIN
    texts = [t for t, keep in zip(reviews.texts, polar, strict=True) if keep]
    labels = (reviews.ratings[polar] > 0).astype(np.int64)
    train_texts, test_texts, y_train, y_test = train_test_split(
        texts, labels, test_size=TEST_SIZE, random_state=0, stratify=labels
    )
    tokenizer = trained_tokenizer(
        "sentiment_bert",
        {"texts": stable_hash(train_texts), "size": VOCABULARY_SIZE, "special": SPECIAL_TOKENS, "version": 1},
        lambda: train_wordpiece(train_texts),
    )
    x_train, x_test = encode(tokenizer, train_texts), encode(tokenizer, test_texts)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), **CONFIG)
    torch.manual_seed(SEED)
    model = Logits(BertForSequenceClassification(config)).eval()
    recipe = {
        "config": CONFIG,
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "weight_decay": WEIGHT_DECAY,
        "seed": SEED,
        "version": BERT_RECIPE_VERSION,
        "torch": torch.__version__,
        "vocabulary": stable_hash(tokenizer.get_vocab()),
        "neutral_margin": NEUTRAL_MARGIN,
        "sequence_length": SEQUENCE_LENGTH,
    }
    weights = trained_weights(model, "sentiment_bert", recipe, lambda m: train_bert(m, x_train, y_train))
    info = {
        "held_out_accuracy": accuracy(model, x_test, y_test),
        "n_test": len(y_test),
        "n_train": len(y_train),
        "vocabulary_size": tokenizer.get_vocab_size(),
        "classes": ["negative", "positive"],
        "config": dict(CONFIG),
    }
    return TrainedBert(model, tokenizer, x_train, x_test, y_train, y_test, weights, info)


def background_rows(n_train: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randperm(n_train, generator=generator)[:N_BACKGROUND]


def reference_ids(n: int = 1, length: int = SEQUENCE_LENGTH) -> torch.Tensor:
    """[CLS] then [PAD]: the "no words" sentence."""
    ids = torch.full((n, length), PAD_ID, dtype=torch.long)
    ids[:, 0] = CLS_ID
    return ids


def token_workload(bert: TrainedBert, name: str = "sentiment_bert") -> Workload:
    """Token ids in; layer methods explain the embeddings; each token is one feature."""
    inputs = torch.as_tensor(bert.x_test[:N_EXPLAINED])
    length = inputs.shape[1]
    spec = WORKLOADS.get(name) if name in WORKLOADS else None
    return Workload(
        name=name,
        model=bert.model,
        inputs=inputs,
        targets=torch.as_tensor(bert.y_test[:N_EXPLAINED]),
        baseline=reference_ids(length=length),
        background=torch.as_tensor(bert.x_train)[background_rows(len(bert.x_train))],
        feature_mask=torch.arange(length)[None],
        layer_name="model.bert.embeddings",
        neuron=(0, 0),  # neuron methods need input gradients, which token ids lack: not applicable
        output_name="model.classifier",
        weights=bert.weights,
        description=spec.description if spec else name,
        method_defaults=spec.method_defaults if spec else {},
        info={**bert.info, "example_tokens": decode(bert.tokenizer, inputs[0])},
    )


def word_embeddings(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(N, T) ids -> (N, D, T) word embeddings, the layout `FromWordEmbeddings` takes."""
    with torch.no_grad():
        return model.model.bert.embeddings.word_embeddings(ids).transpose(1, 2).contiguous()


def encoder_layer_workload(bert: TrainedBert, layer: int, name: str | None = None) -> Workload:
    """Word embeddings in (`FromWordEmbeddings`); layer methods explain encoder layer `layer`."""
    from attrib_core.models.hf import FromWordEmbeddings

    name = name or f"sentiment_bert_layer{layer}"
    spec = WORKLOADS.get(name) if name in WORKLOADS else None
    ids = torch.as_tensor(bert.x_test[:N_EXPLAINED])
    length = ids.shape[1]
    background = torch.as_tensor(bert.x_train)[background_rows(len(bert.x_train))]
    hidden = bert.model.model.config.hidden_size
    return Workload(
        name=name,
        model=FromWordEmbeddings(bert.model.model).eval(),
        inputs=word_embeddings(bert.model, ids),
        targets=torch.as_tensor(bert.y_test[:N_EXPLAINED]),
        baseline=word_embeddings(bert.model, reference_ids(length=length)),
        background=word_embeddings(bert.model, background),
        feature_mask=torch.arange(length).expand(1, hidden, length).clone(),
        layer_name=f"model.bert.encoder.layer.{layer}",
        neuron=(0, 0),  # token 0 ([CLS]), hidden unit 0 of the layer's (T, D) output
        output_name="model.classifier",
        weights=bert.weights,
        description=spec.description if spec else name,
        method_defaults=spec.method_defaults if spec else {},
        info={**bert.info, "example_tokens": decode(bert.tokenizer, ids[0])},
    )


register_workload(
    "sentiment_bert",
    "small BERT encoder (2 layers, trained here) on movie-review sentences: positive vs negative, per word piece",
    input_kind="tokens",
    layer="model.bert.embeddings",
    method_defaults={"Occlusion": {"sliding_window_shapes": (3,), "strides": (1,)}},
)(lambda: token_workload(trained_bert()))

for _layer in range(N_LAYERS):
    register_workload(
        f"sentiment_bert_layer{_layer}",
        f"sentiment_bert from its word embeddings on; layer methods explain encoder layer {_layer}",
        input_kind="series",
        layer=f"model.bert.encoder.layer.{_layer}",
        method_defaults={"Occlusion": {"sliding_window_shapes": (CONFIG["hidden_size"], 1), "strides": (1, 1)}},
    )(functools.partial(lambda layer: encoder_layer_workload(trained_bert(), layer), _layer))
