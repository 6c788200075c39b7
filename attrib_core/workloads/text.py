"""The text workload: which words made a movie-review sentence positive or negative.

A small CNN over word embeddings (`attrib_core.models.text`) trained here, seeded and
cached, on the human-rated sentences of `movie_reviews`. Sentences rated within
NEUTRAL_MARGIN of neutral are left out; the rest are negative (0) or positive (1).

Inputs are integer token ids, padded to SEQUENCE_LENGTH; the reference input is all pad
tokens, whose embedding is zero (as in Captum's IMDB tutorial). Each token is one feature
for the perturbation methods; layer methods explain the embedding layer, whose (B, T, D)
attributions sum over D to one score per token. Gradient methods in input space do not
apply to token ids, and say so (see `MethodSpec.unsupported_reason`).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attrib_core.models.text import PAD_ID, UNKNOWN_ID
from attrib_core.workloads.base import WORKLOADS, Workload, register_workload, trained_weights
from attrib_core.workloads.movie_reviews import MovieReviews, load_movie_reviews, tokenize
from attrib_core.workloads.traits import rule_limits_from_modules

TEXT_RECIPE_VERSION = 1
NEUTRAL_MARGIN = 1.0  # |mean rating| < 1 (a quarter of the -4..4 scale) counts as near-neutral: left out
SEQUENCE_LENGTH = 40  # tokens; 98.4% of the training sentences fit, the rest are cut
MIN_COUNT = 2  # words seen fewer times in the training part map to <unk>
TEST_SIZE = 0.2
N_EXPLAINED = 64  # held-out sentences the benchmark explains
N_BACKGROUND = 8
PAD, UNKNOWN = "<pad>", "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # index = token id; 0 is <pad>, 1 is <unk>

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], min_count: int = MIN_COUNT) -> Vocabulary:
        counts = Counter(word for sentence in sentences for word in sentence)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls((PAD, UNKNOWN, *kept))

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, tokens: Sequence[str], length: int = SEQUENCE_LENGTH) -> np.ndarray:
        """Token ids, cut or padded to `length`; unseen words become <unk>."""
        ids = [self.index.get(t, UNKNOWN_ID) for t in tokens[:length]]
        return np.asarray(ids + [PAD_ID] * (length - len(ids)), dtype=np.int64)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The tokens up to the last non-pad one (pads inside a sentence do not occur)."""
        words = [self.words[int(i)] for i in ids]
        while words and words[-1] == PAD:
            words.pop()
        return words


@dataclass(frozen=True)
class SentimentSplit:
    x_train: np.ndarray  # (N, T) int64 token ids
    x_test: np.ndarray
    y_train: np.ndarray  # (N,) 0 negative, 1 positive
    y_test: np.ndarray
    vocabulary: Vocabulary
    n_left_out: int  # near-neutral sentences


def sentiment_split(reviews: MovieReviews | None = None) -> SentimentSplit:
    """Polar sentences, stratified 80/20; the vocabulary comes from the training part only."""
    from sklearn.model_selection import train_test_split

    reviews = reviews or load_movie_reviews()
    polar = np.abs(reviews.ratings) >= NEUTRAL_MARGIN
    texts = [t for t, keep in zip(reviews.texts, polar, strict=True) if keep]
    labels = (reviews.ratings[polar] > 0).astype(np.int64)
    train_texts, test_texts, y_train, y_test = train_test_split(
        texts, labels, test_size=TEST_SIZE, random_state=0, stratify=labels
    )
    train_tokens = [tokenize(t) for t in train_texts]
    vocabulary = Vocabulary.build(train_tokens)

    def encode(tokens_list: list[list[str]]) -> np.ndarray:
        return np.stack([vocabulary.encode(tokens) for tokens in tokens_list])

    return SentimentSplit(
        encode(train_tokens),
        encode([tokenize(t) for t in test_texts]),
        y_train,
        y_test,
        vocabulary,
        int((~polar).sum()),
    )


@register_workload(
    "sentiment_cnn",
    "word-embedding CNN on human-rated movie-review sentences (vaderSentiment's set): positive vs negative",
    input_kind="tokens",
    layer="embedding",
    method_defaults={"Occlusion": {"sliding_window_shapes": (3,), "strides": (1,)}},
    # SentenceCNN's modules, so LayerLRP's lack of rules (Embedding, Conv1d) is known without building it
    rule_limits=rule_limits_from_modules(
        {"ReLU"}, reused={}, leaf_types={"Embedding", "Conv1d", "ReLU", "Dropout", "Linear"}
    ),
)
def _sentiment_cnn() -> Workload:
    from attrib_core.models.small import TrainingRecipe, accuracy, train_classifier
    from attrib_core.models.text import SentenceCNN

    split = sentiment_split()
    recipe = TrainingRecipe(epochs=4, learning_rate=1e-2)
    torch.manual_seed(recipe.seed)
    model = SentenceCNN(len(split.vocabulary.words))
    weights = trained_weights(
        model,
        "sentiment_cnn",
        {
            "recipe": recipe.__dict__,
            "version": TEXT_RECIPE_VERSION,
            "torch": torch.__version__,
            "neutral_margin": NEUTRAL_MARGIN,
            "sequence_length": SEQUENCE_LENGTH,
            "vocabulary": len(split.vocabulary.words),
        },
        lambda m: train_classifier(m, split.x_train, split.y_train, recipe),
    )
    inputs = torch.as_tensor(split.x_test[:N_EXPLAINED])
    generator = torch.Generator().manual_seed(0)
    background = torch.as_tensor(split.x_train)[torch.randperm(len(split.x_train), generator=generator)[:N_BACKGROUND]]
    return Workload(
        name="sentiment_cnn",
        model=model,
        inputs=inputs,
        targets=torch.as_tensor(split.y_test[:N_EXPLAINED]),
        baseline=torch.full((1, SEQUENCE_LENGTH), PAD_ID, dtype=torch.long),
        background=background,
        feature_mask=torch.arange(SEQUENCE_LENGTH)[None],
        layer_name="embedding",
        # Neuron gradient methods need input gradients, which token ids lack (not applicable);
        # NeuronFeatureAblation removes tokens and watches this unit of the first token's embedding.
        neuron=(0, 0),
        output_name="fc",
        weights=weights,
        description=WORKLOADS.get("sentiment_cnn").description,
        method_defaults=WORKLOADS.get("sentiment_cnn").method_defaults,
        info={
            "held_out_accuracy": accuracy(model, split.x_test, split.y_test),
            "n_test": len(split.y_test),
            "n_train": len(split.y_train),
            "n_left_out_neutral": split.n_left_out,
            "neutral_margin": NEUTRAL_MARGIN,
            "vocabulary_size": len(split.vocabulary.words),
            "classes": ["negative", "positive"],
            "example_tokens": split.vocabulary.decode(inputs[0]),
        },
    )
