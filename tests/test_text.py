"""The text workload (attrib_core/workloads/text.py, movie_reviews.py, models/text.py) and what
token-id inputs change elsewhere: which methods apply, per-token scores for the curves, the
gallery's maps and words."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from pathlib import Path

import captum.attr as ca
import numpy as np
import pandas as pd
import pytest
import torch

from attrib_core import measure
from attrib_core.analysis.render.gallery import gallery_figure, wrap_tokens
from attrib_core.analysis.render.style import method_style
from attrib_core.analysis.results import record_row
from attrib_core.fidelity import evaluate_fidelity
from attrib_core.fidelity.scores import broadcast_to_inputs, completeness_error, perturbation_curve
from attrib_core.methods import METHODS, get_method
from attrib_core.models.small import accuracy
from attrib_core.models.text import PAD_ID, UNKNOWN_ID
from attrib_core.run import RunConfig, prepare, run_attribution
from attrib_core.suite.cells import gallery_map
from attrib_core.sweep import PRESET_DIR, load_preset
from attrib_core.workloads import WORKLOADS, Workload, load_workload, observed_spec
from attrib_core.workloads import movie_reviews as mr
from attrib_core.workloads.applicability import applies_to, unsupported_reason
from attrib_core.workloads.text import NEUTRAL_MARGIN, SEQUENCE_LENGTH, Vocabulary, sentiment_split

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured: 0.786 held-out accuracy (seeded, one thread); a majority-class guess gets 0.50.
ACCURACY_FLOOR = 0.75
APPLICABLE = {
    "Occlusion",
    "FeatureAblation",
    "FeaturePermutation",
    "ShapleyValueSampling",
    "KernelShap",
    "Lime",
    "LayerIntegratedGradients",
    "LayerGradientXActivation",
    "LayerActivation",
    "LayerDeepLift",
    "LayerFeatureAblation",
    "NeuronFeatureAblation",
    "ShapleyValues",  # takes token ids, but not 40 of them: prepare() finds it not applicable (too many features)
}


@pytest.fixture(scope="module")
def sentiment() -> Workload:
    return load_workload("sentiment_cnn")


def target_logit(workload: Workload, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return workload.model(inputs).gather(1, targets[:, None])[:, 0]


# --- the data ---------------------------------------------------------------------------


def test_the_real_file_has_every_rated_sentence():
    reviews = mr.load_movie_reviews()
    assert len(reviews.texts) == len(reviews.ratings) == mr.N_SENTENCES == 10_605
    assert reviews.ids[0] == 1 and reviews.texts[2] == "Effective but too tepid biopic"
    assert reviews.ratings.min() >= -4 and reviews.ratings.max() <= 4


def test_split_leaves_out_near_neutral_sentences_and_keeps_classes_balanced():
    reviews = mr.load_movie_reviews()
    split = sentiment_split(reviews)
    polar = int((np.abs(reviews.ratings) >= NEUTRAL_MARGIN).sum())
    assert split.n_left_out == mr.N_SENTENCES - polar == 1432
    assert (len(split.y_train), len(split.y_test)) == (7338, 1835)
    assert abs(split.y_train.mean() - split.y_test.mean()) < 0.01  # stratified
    assert split.x_train.shape[1] == split.x_test.shape[1] == SEQUENCE_LENGTH
    assert split.vocabulary.words[:2] == ("<pad>", "<unk>")
    train_ids = set(np.unique(split.x_train))
    assert train_ids == set(range(len(split.vocabulary.words)))  # every word was seen in training


def test_tokenize_and_vocabulary_round_trip():
    assert mr.tokenize("It doesn't ''work'', really!") == ["it", "doesn't", "work", "really", "!"]
    vocab = Vocabulary.build([["good", "film"], ["good", "plot"]], min_count=2)
    assert vocab.words == ("<pad>", "<unk>", "good")
    ids = vocab.encode(["good", "awful"], length=4)
    assert ids.tolist() == [2, UNKNOWN_ID, PAD_ID, PAD_ID]
    assert vocab.decode(ids) == ["good", "<unk>"]
    assert vocab.encode(["good"] * 6, length=4).tolist() == [2, 2, 2, 2]  # cut to length


def test_parse_names_a_bad_line():
    assert mr.parse_snippets(b"7\t-1.5\tdull\r\n8\t2.0\tfun\r\n").texts == ("dull", "fun")
    with pytest.raises(ValueError, match="line 2: expected 3 tab-separated fields, got 2"):
        mr.parse_snippets(b"7\t-1.5\tdull\r\n8\tfun\r\n")


def fake_sdist(path: Path, snippets: bytes) -> Path:
    """A tarball laid out like vaderSentiment's sdist, with `snippets` as the data file."""

    def tar_bytes(name: str, data: bytes) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    path.write_bytes(tar_bytes(mr.INNER_ARCHIVE, tar_bytes(mr.SNIPPETS, snippets)))
    return path


def test_an_sdist_is_checked_extracted_and_cached(tmp_path, monkeypatch):
    snippets = b"1\t2.5\tgreat fun\r\n2\t-3.0\ta mess\r\n"
    sdist = fake_sdist(tmp_path / "fake.tar.gz", snippets)
    monkeypatch.setenv("ATTRIB_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(mr.SDIST_ENV, str(sdist))
    with pytest.raises(mr.MovieReviewsUnavailable, match=re.escape("is not vaderSentiment 3.3.2's")):
        mr.snippets_bytes()  # the real pinned hash: the fake is refused
    monkeypatch.setattr(mr, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(mr, "SNIPPETS_SHA256", hashlib.sha256(snippets).hexdigest())
    assert mr.snippets_bytes() == snippets
    assert mr.snippets_path().read_bytes() == snippets  # cached under the cache folder
    monkeypatch.delenv(mr.SDIST_ENV)
    assert mr.parse_snippets(mr.snippets_bytes()).texts == ("great fun", "a mess")  # now from the cache


def test_offline_and_not_cached_fails_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv(mr.SDIST_ENV, raising=False)

    def no_network(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(mr.subprocess, "run", no_network)
    with pytest.raises(mr.MovieReviewsUnavailable) as error:
        mr.snippets_bytes()
    message = str(error.value)
    assert "network unreachable" in message and mr.SDIST_ENV in message and mr.SDIST_SHA256 in message
    assert str(tmp_path / "data" / "movieReviewSnippets_GroundTruth.txt") in message
    monkeypatch.setenv(mr.SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(mr.MovieReviewsUnavailable, match=re.escape("missing.tar.gz' is not a file")):
        mr.snippets_bytes()


# --- the model and the workload ---------------------------------------------------------


def test_held_out_accuracy_is_above_the_measured_floor(sentiment):
    split = sentiment_split()
    recomputed = accuracy(sentiment.model, split.x_test, split.y_test)
    assert recomputed == sentiment.info["held_out_accuracy"]
    assert recomputed >= ACCURACY_FLOOR
    assert sentiment.weights.startswith("trained:")


def test_workload_pieces_fit_token_inputs(sentiment):
    assert sentiment.inputs.dtype == torch.int64 and sentiment.inputs.shape == (64, SEQUENCE_LENGTH)
    assert sentiment.is_token_ids and not sentiment.is_image
    assert torch.equal(sentiment.baseline, torch.full((1, SEQUENCE_LENGTH), PAD_ID))
    assert torch.equal(sentiment.feature_mask, torch.arange(SEQUENCE_LENGTH)[None])
    assert sentiment.n_features == SEQUENCE_LENGTH
    assert sentiment.background.shape == (8, SEQUENCE_LENGTH)
    assert sentiment.layer is sentiment.model.embedding
    assert torch.count_nonzero(sentiment.model.embedding.weight[PAD_ID]) == 0  # the reference embeds to zero
    split = sentiment_split()
    assert sentiment.info["example_tokens"] == split.vocabulary.decode(sentiment.inputs[0])
    assert torch.equal(sentiment.targets, torch.as_tensor(split.y_test[:64]))


def test_exactly_the_methods_that_can_use_token_ids_apply(sentiment):
    declared, observed = WORKLOADS.get("sentiment_cnn"), observed_spec("sentiment_cnn")
    for spec in (declared, observed):  # what validation trusts (nothing built) and what the run sees
        assert {m for m in METHODS.names() if applies_to(get_method(m), spec)} == APPLICABLE
    reason = unsupported_reason(get_method("IntegratedGradients"), declared)
    assert "token ids" in reason and "LayerIntegratedGradients" in reason
    with pytest.raises(ValueError, match="LayerConductance needs gradients with respect to the inputs"):
        prepare(RunConfig("LayerConductance", "sentiment_cnn"))
    with pytest.raises(ValueError, match="ShapleyValues needs a feature mask of <= 6 groups"):
        prepare(RunConfig("ShapleyValues", "sentiment_cnn"))
    assert "token ids" in unsupported_reason(get_method("LayerLRP"), declared)  # its backward reaches the inputs
    assert "Embedding" in declared.traits.rule_limits["lrp"]


def test_text_preset_has_every_applicable_method_at_batch_1_and_8():
    preset = load_preset("text", PRESET_DIR)
    cells = preset.cells(("cpu",))
    runnable = APPLICABLE - {"ShapleyValues"}
    assert {c.method for c in cells} == runnable
    assert {(c.method, c.batch_size) for c in cells} == {(m, b) for m in runnable for b in (1, 8)} - {
        ("FeaturePermutation", 1)  # needs two examples to permute between
    }


# --- attributions at token level --------------------------------------------------------


def test_layer_integrated_gradients_is_captums_over_the_embedding(sentiment):
    inputs, targets = sentiment.batch(4)
    ours = run_attribution("LayerIntegratedGradients", "sentiment_cnn", batch_size=4, knobs={"n_steps": 8})
    theirs = ca.LayerIntegratedGradients(sentiment.model, sentiment.model.embedding).attribute(
        inputs, baselines=sentiment.baseline, target=targets, n_steps=8
    )
    assert ours.attributions.shape == (4, SEQUENCE_LENGTH, 50)
    assert torch.equal(ours.attributions, theirs)
    assert torch.count_nonzero(ours.attributions[inputs == PAD_ID]) == 0  # pad = reference: nothing to attribute


def test_layer_completeness_matches_captums_delta(sentiment):
    result = run_attribution("LayerIntegratedGradients", "sentiment_cnn", batch_size=4, with_delta=True)
    inputs, targets = sentiment.batch(4)
    error = completeness_error(sentiment.model, inputs, result.attributions, targets, sentiment.baseline)
    torch.testing.assert_close(error.absolute, result.delta.double().abs(), rtol=1e-4, atol=1e-5)


def test_feature_ablation_is_the_logit_drop_when_a_token_becomes_pad(sentiment):
    inputs, targets = sentiment.batch(2)
    attr = run_attribution("FeatureAblation", "sentiment_cnn", batch_size=2).attributions
    full = target_logit(sentiment, inputs, targets)
    for position in (0, 3, SEQUENCE_LENGTH - 1):
        ablated = inputs.clone()
        ablated[:, position] = PAD_ID
        expected = full - target_logit(sentiment, ablated, targets)
        torch.testing.assert_close(attr[:, position], expected, rtol=1e-5, atol=1e-6)


def test_layer_attributions_sum_over_the_embedding_to_one_score_per_token(sentiment):
    inputs, _ = sentiment.batch(3)
    attr = torch.randn(3, SEQUENCE_LENGTH, 50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(broadcast_to_inputs(attr, inputs), attr.sum(2))
    assert broadcast_to_inputs(attr, inputs.float()) is None  # float inputs: layer space stays layer space
    assert gallery_map(attr, inputs).shape == (SEQUENCE_LENGTH,)
    np.testing.assert_allclose(gallery_map(attr, inputs), attr[0].sum(1).numpy().astype(np.float16))


def test_deletion_replaces_tokens_by_pad_most_attributed_first(sentiment):
    inputs, targets = sentiment.batch(2)
    attr = run_attribution("LayerGradientXActivation", "sentiment_cnn", batch_size=2).attributions
    curve = perturbation_curve(
        sentiment.model, inputs, broadcast_to_inputs(attr, inputs), targets, sentiment.baseline, sentiment.feature_mask
    )
    assert curve.n_groups == SEQUENCE_LENGTH and curve.fractions[2].item() == pytest.approx(4 / SEQUENCE_LENGTH)

    def probability(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return sentiment.model(x).softmax(1).gather(1, targets[:, None])[:, 0].double()

    per_token = attr.sum(2)
    deleted = inputs.clone()
    for row in range(2):  # the curve's third point: the 4 most attributed tokens are pad
        deleted[row, per_token[row].argsort(descending=True, stable=True)[:4]] = PAD_ID
    torch.testing.assert_close(curve.scores[:, 0], probability(inputs))
    torch.testing.assert_close(curve.scores[:, 2], probability(deleted))
    torch.testing.assert_close(curve.scores[:, -1], probability(sentiment.baseline.expand(2, -1)))


def test_fidelity_records_for_token_inputs(sentiment):
    prepared = prepare(RunConfig("LayerIntegratedGradients", "sentiment_cnn", batch_size=2, knobs={"n_steps": 8}))
    records = evaluate_fidelity(
        prepared, prepared(), ["completeness", "deletion", "insertion", "infidelity", "sensitivity"]
    )
    assert records["deletion"]["status"] == records["insertion"]["status"] == "ok"
    assert records["deletion"]["n_groups"] == SEQUENCE_LENGTH
    assert records["completeness"]["status"] == "ok"
    for name in ("infidelity", "sensitivity"):
        assert records[name]["status"] == "not_applicable" and "token ids" in records[name]["reason"]


def test_calibration_differentiates_the_parameters_for_token_inputs(sentiment):
    inputs, targets = sentiment.batch(2)
    result = measure.calibrate(sentiment.model, inputs, targets, "cpu", repeats=1, warmup=0)
    assert result["backward_to"] == "parameters (integer inputs)"
    assert result["forward_backward_s_per_sample"] > 0
    assert all(p.grad is None for p in sentiment.model.parameters())


# --- the report's gallery ---------------------------------------------------------------


def test_wrap_tokens_keeps_lines_within_the_width():
    assert wrap_tokens(("ab", "cd", "efg", "h"), 5) == [[0, 1], [2, 3]]
    assert wrap_tokens(("unbreakable",), 4) == [[0]]  # a word longer than a line gets its own


def test_results_rows_carry_the_words_and_the_gallery_draws_them():
    tokens = ["a", "gorgeous", "mess"]
    record = {
        "extra_info": {
            "cell_key": "k",
            "cell": {"workload": "sentiment_cnn", "method": "FeatureAblation", "batch_size": 1},
            "status": "ok",
            "example_tokens": tokens,
        },
        "stats": {"median": 0.01},
    }
    row = record_row(record, Path("r.json"))
    assert row["example_tokens"] == ("a", "gorgeous", "mess")
    cells = pd.DataFrame([{**row, "file": "r.json", "device": "cpu", "median_s": 0.01}])
    maps = {("r.json", "k"): np.array([0.1, 0.9, -0.5, 0.0], dtype=np.float32)}  # last entry: a pad position
    rendered = gallery_figure("sentiment_cnn", cells, maps, method_style(["FeatureAblation"]))
    assert rendered.figure is not None and "per-token attribution" in rendered.caption
    words = [t.get_text() for t in rendered.figure.axes[0].texts]
    assert words == tokens
