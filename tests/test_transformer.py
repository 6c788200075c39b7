"""The Transformer text workloads (attrib_core/workloads/transformer.py, models/hf.py): the
WordPiece tokenizer, the two views of one BERT model (token ids; word embeddings on), Captum's
BERT-tutorial methods on them, and the gallery's one score per word piece. Fast tests build a
tiny untrained BERT; the trained one (about 20 s to train, then cached) is in the slow tests."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from attrib_core.methods import get_method
from attrib_core.models.hf import FromWordEmbeddings, Logits
from attrib_core.suite.cells import gallery_map
from attrib_core.sweep import PRESET_DIR, load_preset
from attrib_core.workloads import WORKLOADS
from attrib_core.workloads import transformer as tf
from attrib_core.workloads.applicability import applies_to

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [
    "a gorgeous, witty film",
    "a dull and lifeless mess",
    "the plot is thin but the acting is wonderful",
    "nothing here works",
] * 4
LENGTH = 12


@pytest.fixture(scope="module")
def tiny() -> tf.TrainedBert:
    tokenizer = tf.train_wordpiece(TEXTS, vocabulary_size=200)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = Logits(BertForSequenceClassification(config)).eval()
    x = tf.encode(tokenizer, TEXTS, LENGTH)
    y = np.arange(len(TEXTS)) % 2
    return tf.TrainedBert(model, tokenizer, x, x, y, y, "random", {})


def test_wordpiece_puts_the_special_tokens_first_and_encodes_cls_then_pads(tiny):
    ids = tf.encode(tiny.tokenizer, ["a dull film"], LENGTH)[0]
    assert ids[0] == tf.CLS_ID and ids[-1] == tf.PAD_ID
    assert tf.decode(tiny.tokenizer, torch.as_tensor(ids)) == ["[CLS]", "a", "dull", "film"]
    long = tf.encode(tiny.tokenizer, [" ".join(TEXTS)], LENGTH)[0]
    assert tf.PAD_ID not in long  # cut to the length, never past it


def test_the_embedding_view_computes_what_the_token_view_does(tiny):
    ids = torch.as_tensor(tiny.x_test[:4])
    embeddings = tf.word_embeddings(tiny.model, ids)
    assert embeddings.shape == (4, 16, LENGTH)  # (N, D, T): a series of tokens
    with torch.no_grad():
        torch.testing.assert_close(FromWordEmbeddings(tiny.model.model)(embeddings), tiny.model(ids))


def test_token_workload_pieces_fit(tiny):
    w = tf.token_workload(tiny, name="tiny_bert")
    assert w.is_token_ids and w.inputs.shape == (len(TEXTS), LENGTH)
    assert w.baseline.tolist() == [[tf.CLS_ID] + [tf.PAD_ID] * (LENGTH - 1)]
    assert w.n_features == LENGTH and w.layer is tiny.model.model.bert.embeddings
    assert w.info["example_tokens"] == tf.decode(tiny.tokenizer, w.inputs[0])


def test_layer_integrated_gradients_on_the_embeddings_is_complete(tiny):
    w = tf.token_workload(tiny, name="tiny_bert")
    inputs, targets = w.batch(3)
    attr, delta = ca.LayerIntegratedGradients(w.model, w.layer).attribute(
        inputs, baselines=w.baseline, target=targets, n_steps=64, return_convergence_delta=True
    )
    assert attr.shape == (3, LENGTH, 16)
    # Gauss-Legendre with 64 points on a smooth path: the error is at float32 rounding of the logits
    assert delta.abs().max().item() < 1e-3


def test_conductance_per_encoder_layer_sums_to_the_output_difference(tiny):
    for layer in range(2):
        w = tf.encoder_layer_workload(tiny, layer, name=f"tiny_bert_layer{layer}")
        assert w.layer is tiny.model.model.bert.encoder.layer[layer]
        inputs, targets = w.batch(2)
        attr, delta = ca.LayerConductance(w.model, w.layer).attribute(
            inputs, baselines=w.baseline, target=targets, n_steps=200, return_convergence_delta=True
        )
        assert attr.shape == (2, LENGTH, 16)  # the layer's (T, D) output
        with torch.no_grad():
            gap = (w.model(inputs) - w.model(w.baseline)).gather(1, targets[:, None])[:, 0]
        # a Riemann sum over 200 steps: its error is a small share of the output difference
        assert (delta.abs() <= 0.05 * gap.abs() + 1e-3).all()


def test_gallery_gives_one_score_per_token_for_an_encoder_layer(tiny):
    w = tf.encoder_layer_workload(tiny, 0, name="tiny_bert_layer0")
    layer_attr = torch.randn(1, LENGTH, 16, generator=torch.Generator().manual_seed(0))  # (N, T, D)
    np.testing.assert_allclose(gallery_map(layer_attr, w.inputs[:1]), layer_attr[0].sum(1).numpy().astype(np.float16))
    input_attr = torch.randn(1, 16, LENGTH, generator=torch.Generator().manual_seed(1))  # (N, D, T)
    np.testing.assert_allclose(gallery_map(input_attr, w.inputs[:1]), input_attr[0].sum(0).numpy().astype(np.float16))


def test_conductance_applies_to_the_layer_workloads_and_not_to_token_ids():
    conductance = get_method("LayerConductance")
    assert not applies_to(conductance, WORKLOADS.get("sentiment_bert"))
    for layer in range(tf.N_LAYERS):
        assert applies_to(conductance, WORKLOADS.get(f"sentiment_bert_layer{layer}"))


def test_llm_preset_runs_the_tutorials_methods_on_each_layer():
    cells = load_preset("llm", PRESET_DIR).cells(("cpu",))
    by_workload: dict[str, set[str]] = {}
    for cell in cells:
        by_workload.setdefault(cell.workload, set()).add(cell.method)
    assert {"LayerIntegratedGradients", "FeatureAblation", "ShapleyValueSampling", "KernelShap", "Lime"} <= by_workload[
        "sentiment_bert"
    ]
    for layer in range(tf.N_LAYERS):
        assert by_workload[f"sentiment_bert_layer{layer}"] == {"LayerConductance", "LayerIntegratedGradients"}


# --- the trained model ------------------------------------------------------------------


@pytest.mark.slow
def test_trained_bert_beats_the_word_cnn_on_held_out_sentences():
    from attrib_core.models.small import accuracy

    bert = tf.trained_bert()
    assert bert.weights.startswith("trained:")
    # sentiment_cnn's held-out accuracy on the same split is 0.786; measured: 0.795-0.814 over five
    # tokenizer trainings (0.796 with the one cached here)
    assert accuracy(bert.model, bert.x_test, bert.y_test) == bert.info["held_out_accuracy"] >= 0.786


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workload", "method", "captum_class"),
    [
        ("sentiment_bert", "LayerIntegratedGradients", ca.LayerIntegratedGradients),
        ("sentiment_bert_layer0", "LayerConductance", ca.LayerConductance),
        ("sentiment_bert_layer1", "LayerIntegratedGradients", ca.LayerIntegratedGradients),
    ],
)
def test_the_harness_runs_what_a_direct_captum_call_does(workload, method, captum_class):
    from attrib_core.run import run_attribution
    from attrib_core.workloads import load_workload

    w = load_workload(workload)
    inputs, targets = w.batch(2)
    ours = run_attribution(method, workload, batch_size=2, knobs={"n_steps": 8}).attributions
    theirs = captum_class(w.model, w.layer).attribute(inputs, baselines=w.baseline, target=targets, n_steps=8)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.slow
def test_deletion_and_completeness_are_recorded_for_the_trained_model():
    from attrib_core.fidelity import evaluate_fidelity
    from attrib_core.run import RunConfig, prepare

    prepared = prepare(RunConfig("LayerIntegratedGradients", "sentiment_bert", batch_size=2, knobs={"n_steps": 16}))
    records = evaluate_fidelity(prepared, prepared(), ["completeness", "deletion"])
    assert records["deletion"]["status"] == records["completeness"]["status"] == "ok"
    assert records["deletion"]["n_groups"] == tf.SEQUENCE_LENGTH


def test_a_tokenizer_is_trained_once_per_recipe_and_reloaded(tmp_path, monkeypatch):
    from attrib_core.workloads.base import trained_tokenizer

    monkeypatch.setenv("ATTRIB_BENCH_CACHE", str(tmp_path))
    first = trained_tokenizer("tiny", {"texts": 1}, lambda: tf.train_wordpiece(TEXTS, vocabulary_size=200))

    def must_not_train():
        raise AssertionError("trained again")

    again = trained_tokenizer("tiny", {"texts": 1}, must_not_train)
    assert again.get_vocab() == first.get_vocab() and again.encode(TEXTS[0]).ids == first.encode(TEXTS[0]).ids
    other = trained_tokenizer("tiny", {"texts": 2}, lambda: tf.train_wordpiece(TEXTS[:2], vocabulary_size=100))
    assert other.get_vocab() != first.get_vocab()  # another recipe, another file
