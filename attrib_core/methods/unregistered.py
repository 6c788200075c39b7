"""The names in `captum.attr.__all__` that are not registered methods, each with the reason.

Every name there is either a registered method's class or listed here (tests/test_methods.py
checks both ways), so a class that a new Captum adds fails that test until it is registered or
listed.
"""

from __future__ import annotations

_BASE = "an abstract base class of Captum's methods; the registered methods are its concrete subclasses"
_LLM_INPUT = "an input wrapper (interpretable features of a prompt) for the LLM attribution classes, not a method"
_REMOTE = "a client of a remote LLM inference server for RemoteLLMAttribution, not a method"
_EMBEDDING = (
    "a helper to attribute at an embedding layer by hand; the bench runs layer methods on a workload's "
    "embedding layer instead"
)
_SUMMARY = "a statistic that summarises attributions over many batches (captum.attr.Summarizer), not a method"

UNREGISTERED: dict[str, str] = {
    "Attribution": _BASE,
    "GradientAttribution": _BASE,
    "PerturbationAttribution": _BASE,
    "NeuronAttribution": _BASE,
    "LayerAttribution": _BASE,
    "LimeBase": (
        "Lime's generic form: it needs the user's sampler and transforms of an interpretable space; its "
        "configurations Lime and KernelShap are registered"
    ),
    "DataLoaderAttribution": (
        "attributes one metric of a whole DataLoader (FeatureAblation inside, the only method it supports) and "
        "returns one attribution for the data set, not one per example: no cell's per-example target, shape or "
        "fidelity applies; FeatureAblation is registered and measures the same perturbations per batch"
    ),
    "LayerFeaturePermutation": (
        "Captum 0.9 selects the target twice (inside its layer forward, then again in FeaturePermutation), so any "
        "target on a classifier raises and no target returns twice the batch's rows; "
        "tests/test_methods.py fails once a Captum release fixes it, so it can be registered then"
    ),
    "LLMAttributionResult": "the LLM attribution classes' result container, not a method",
    "RemoteLLMAttribution": (
        "needs a remote LLM inference server (RemoteLLMProvider, e.g. VLLMProvider); the bench runs every model "
        "locally, so there is nothing here to time"
    ),
    "RemoteLLMProvider": _REMOTE,
    "VLLMProvider": _REMOTE,
    "InterpretableInput": _LLM_INPUT,
    "TextTemplateInput": _LLM_INPUT,
    "TextTokenInput": _LLM_INPUT,
    "ImageMaskInput": _LLM_INPUT,
    "ProductBaselines": "a sampler of baselines for perturbation methods (a product of value sets), not a method",
    "InterpretableEmbeddingBase": _EMBEDDING,
    "configure_interpretable_embedding_layer": _EMBEDDING,
    "remove_interpretable_embedding_layer": _EMBEDDING,
    "TokenReferenceBase": (
        "builds reference token sequences; text workloads give their own baseline (the all-pad sentence)"
    ),
    "visualization": "the plotting module (captum.attr.visualization), not a method",
    "Summarizer": _SUMMARY,
    "ClassSummarizer": _SUMMARY,
    "SummarizerSingleTensor": _SUMMARY,
    "CommonStats": _SUMMARY,
    "StatValue": _SUMMARY,
    "Mean": _SUMMARY,
    "StdDev": _SUMMARY,
    "MSE": _SUMMARY,
    "Var": _SUMMARY,
    "Min": _SUMMARY,
    "Max": _SUMMARY,
    "Sum": _SUMMARY,
    "Count": _SUMMARY,
}
