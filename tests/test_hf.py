"""`hf:<model id or folder>` workloads (attrib_core/workloads/hf.py): a model saved with
`save_pretrained` is benchmarked offline, as a classifier or a causal LM by its architecture;
without its files, one line names the id and where it was looked for, exit status 2."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from attrib_core import exits
from attrib_core.commands import cli
from attrib_core.run import NotApplicable, RunConfig, prepare, run_attribution
from attrib_core.workloads import load_workload, workload_spec
from attrib_core.workloads import transformer as tf
from attrib_core.workloads.hf import DEFAULT_LENGTH, DEFAULT_TEXTS, HFModelUnavailable

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    """A tiny untrained BERT classifier and a WordPiece tokenizer, as save_pretrained writes them."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = tf.train_wordpiece(list(DEFAULT_TEXTS), vocabulary_size=120)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", cls_token="[CLS]", unk_token="[UNK]")
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def causal_lm_folder(tmp_path_factory):
    """A tiny untrained GPT-2, no tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    return folder


def test_a_saved_classifier_is_explained_through_its_tokenizer(classifier_folder):
    name = f"hf:{classifier_folder}"
    spec = workload_spec(name)
    assert spec.source == "huggingface" and spec.traits.input_kind == "tokens"
    w = load_workload(name)
    assert w.inputs.shape == (len(DEFAULT_TEXTS), DEFAULT_LENGTH) and w.inputs.dtype == torch.int64
    assert w.layer_name == "model.bert.embeddings.word_embeddings"
    assert w.info["task"] == "classification"
    pieces = "".join(t.removeprefix("##") for t in w.info["example_tokens"])
    assert pieces.startswith("agorgeous")  # the saved tokenizer's word pieces of the first text
    with torch.no_grad():
        assert torch.equal(w.targets, w.model(w.inputs).argmax(1))  # the predicted class
    inputs, targets = w.batch(2)
    ours = run_attribution("LayerIntegratedGradients", name, batch_size=2, knobs={"n_steps": 8}).attributions
    theirs = ca.LayerIntegratedGradients(w.model, w.layer).attribute(
        inputs, baselines=w.baseline, target=targets, n_steps=8
    )
    torch.testing.assert_close(ours, theirs)


def test_a_saved_causal_lm_is_explained_at_its_next_token(causal_lm_folder):
    name = f"hf:{causal_lm_folder}"
    w = load_workload(name)
    assert w.info["task"] == "causal_lm" and "random" in w.info["tokens"]
    with torch.no_grad():
        assert w.model(w.inputs).shape == (len(DEFAULT_TEXTS), 50)  # logits for the next token
    inputs, targets = w.batch(1)
    attr = run_attribution("FeatureAblation", name, batch_size=1).attributions
    assert attr.shape == (1, DEFAULT_LENGTH)
    with torch.no_grad():
        full = w.model(inputs)[0, targets[0]]
        ablated = inputs.clone()
        ablated[0, 0] = w.baseline[0, 0]
        drop = full - w.model(ablated)[0, targets[0]]
    torch.testing.assert_close(attr[0, 0], drop, rtol=1e-4, atol=1e-5)
    # without its tokenizer there is no text to attribute: Captum's LLM wrappers are ruled out once built
    assert workload_spec(name).traits.generates_text is None
    with pytest.raises(NotApplicable, match="not a causal LM with a tokenizer"):
        prepare(RunConfig("LLM-FeatureAblation", name))


def test_missing_files_name_the_id_and_where_they_were_looked_for(tmp_path):
    with pytest.raises(HFModelUnavailable) as caught:
        workload_spec("hf:nobody/no-such-model")
    message = str(caught.value)
    assert "'nobody/no-such-model'" in message and "local_files_only=True" in message
    assert "Hugging Face cache" in message and "\n" not in message
    with pytest.raises(HFModelUnavailable, match=r"does not hold a loadable config\.json"):
        workload_spec(f"hf:{tmp_path}")  # a folder, but not a saved model


def test_missing_files_exit_with_bad_input(capsys):
    assert cli.main(["tune", "--workload", "hf:nobody/no-such-model", "--method", "Saliency"]) == exits.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "nobody/no-such-model" in err and err.count("\n") == 1 and "Traceback" not in err
