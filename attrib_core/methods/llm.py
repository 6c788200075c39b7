"""Captum's LLM attribution in the method registry: `LLMAttribution` over a perturbation method
and `LLMGradientAttribution` over LayerIntegratedGradients, explaining the tokens a causal LM
generates after a prompt.

Captum's wrappers take one `TextTokenInput` (a prompt's text, tokenised) and a target sequence,
not tensors; the harness's one way to run hands an attributor a batch of token ids. `LLMRunner`
is the attributor between the two: for each prompt it builds the `TextTokenInput` from the
decoded ids (and checks that the tokenizer gives the same ids back), takes as target the
cell's target (the token the model predicts next, as for every other method) followed by the
tokens the model generates greedily after it, `target_length` in all (generated once per
prompt and kept, so the timed calls attribute and do not generate), calls the wrapper, and
returns the sequence attributions `seq_attr`: one score per prompt token, (B, T), like the
other token methods. The fidelity curves score the cell's target, the first generated token.

It applies to workloads whose model is a tensor view of a Hugging Face causal LM with its
tokenizer (`model.model`, `model.tokenizer`; traits `generates_text`).

Cost, in rows through the LM's output layer per prompt: Captum's own count of evaluations for
the inner method, times the forward calls per evaluation, which is `target_length` when it
decodes token by token (`forward_in_tokens`, with or without the KV cache) and 1 when it scores
prompt and target in one forward. With the KV cache each of those rows carries one new token
instead of the whole sequence, which the rows do not show and the timings do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import captum.attr as ca
import torch
from torch import nn

from attrib_core.methods.costs import CostInput, Passes
from attrib_core.methods.knobs import IG_KNOBS, Knob
from attrib_core.methods.knobs import check_integration as _check_integration
from attrib_core.methods.spec import MethodSpec, register_method

TARGET_LENGTH = Knob("target_length", 4, "generated tokens explained (greedy)", minimum=1, abbreviation="gen")
KV_CACHE = Knob(
    "use_cached_outputs",
    True,
    "reuse the KV cache while decoding the target token by token (Captum's default)",
    type="bool",
    abbreviation="kv",
)
IN_TOKENS = Knob(
    "forward_in_tokens",
    True,
    "decode the target token by token (True, Captum's default) or score it in one forward (False)",
    type="bool",
    abbreviation="by_token",
)


def language_model(model: nn.Module) -> tuple[nn.Module, Any]:
    """The Hugging Face causal LM and tokenizer behind a workload's tensor view (unwrapping the
    harness's own wrappers), or ValueError naming what is missing."""
    seen = model
    while getattr(seen, "tokenizer", None) is None and isinstance(getattr(seen, "model", None), nn.Module):
        seen = seen.model
    inner, tokenizer = getattr(seen, "model", None), getattr(seen, "tokenizer", None)
    if tokenizer is None or not callable(getattr(inner, "generate", None)):
        raise ValueError(
            f"{type(model).__name__} is not a causal LM with a tokenizer: Captum's LLM attribution needs the "
            "workload's model to hold `.model` (a Hugging Face causal LM) and `.tokenizer`"
        )
    return inner, tokenizer


class LLMRunner:
    """The harness's attributor for one of Captum's LLM wrappers: token ids (B, T) -> (B, T)."""

    def __init__(self, wrapper: Any, lm: nn.Module, tokenizer: Any) -> None:
        self.wrapper = wrapper
        self.lm = lm
        self.tokenizer = tokenizer
        self._targets: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}

    def text_input(self, ids: torch.Tensor) -> ca.TextTokenInput:
        """What a user passes Captum: the prompt's text, tokenised by the model's tokenizer."""
        text = self.tokenizer.decode(ids.tolist())
        prompt = ca.TextTokenInput(text, self.tokenizer)
        if prompt.inp_tensor[0].tolist() != ids.tolist():
            raise ValueError(
                f"the prompt's text {text[:60]!r}... tokenises to {prompt.inp_tensor.shape[1]} other ids than the "
                f"workload's {len(ids)}; give prompts that decode and encode back to the same tokens"
            )
        return prompt

    def target(self, ids: torch.Tensor, first: int, length: int) -> torch.Tensor:
        """`first` (the cell's target: the token the model predicts after `ids`), then the tokens the
        model generates greedily after it, `length` in all; generated once per prompt and kept."""
        key = (tuple(ids.tolist()), first, length)
        if key not in self._targets:
            start = torch.cat([ids, ids.new_tensor([first])])[None]
            generated = start
            if length > 1:
                with torch.no_grad():
                    generated = self.lm.generate(
                        start,
                        attention_mask=torch.ones_like(start),
                        max_new_tokens=length - 1,
                        min_new_tokens=length - 1,
                        do_sample=False,
                        pad_token_id=self.tokenizer.pad_token_id,
                    )
            self._targets[key] = generated[0, len(ids) :].cpu()
        return self._targets[key]

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor, target_length: int, **kwargs: Any) -> torch.Tensor:
        rows = []
        for ids, first in zip(inputs, target.tolist(), strict=True):
            explained = self.target(ids, first, target_length)
            rows.append(self.wrapper.attribute(self.text_input(ids), target=explained, **kwargs).seq_attr)
        return torch.stack(rows)


@dataclass(frozen=True)
class LLMMethodSpec(MethodSpec):
    """A method run through one of Captum's LLM wrappers (`wrapper`) around `captum_class`."""

    wrapper: type = ca.LLMAttribution
    needs_generator: bool = True  # attrib_core.workloads.applicability: only causal LMs with a tokenizer

    def build(self, model: nn.Module, layer: nn.Module | None) -> LLMRunner:
        lm, tokenizer = language_model(model)
        inner = self.captum_class(lm) if self.kind == "feature" else self.captum_class(lm, layer)
        return LLMRunner(self.wrapper(inner, tokenizer), lm, tokenizer)


def calls_per_evaluation(c: CostInput) -> int:
    """Model forwards per scored perturbation: one per target token when decoding token by token."""
    if c.knobs.get("forward_in_tokens", True):
        return c.knobs["target_length"]
    return 1


def llm_ablation(c: CostInput) -> Passes:
    """The unperturbed prompt, then each token replaced by the baseline token, one at a time."""
    return Passes(c.batch_size * (1 + c.n_features) * calls_per_evaluation(c), 0)


def llm_shapley_sampling(c: CostInput) -> Passes:
    return Passes(c.batch_size * (1 + c.knobs["n_samples"] * c.n_features) * calls_per_evaluation(c), 0)


def llm_surrogate(c: CostInput) -> Passes:
    """Lime / KernelShap see one prompt at a time (Captum's wrapper), so no extra first evaluation."""
    return Passes(c.batch_size * c.knobs["n_samples"] * calls_per_evaluation(c), 0)


def llm_layer_path_integral(c: CostInput) -> Passes:
    """One LayerIntegratedGradients call per target token (on the prompt plus the target so far):
    n_steps path rows forward and backward, and one forward each of the prompt and the baseline."""
    calls = c.batch_size * c.knobs["target_length"]
    return Passes(calls * (c.knobs["n_steps"] + 2), calls * c.knobs["n_steps"])


PERTURBATION_KNOBS = (TARGET_LENGTH, KV_CACHE, IN_TOKENS)
N_SAMPLES = {
    "ShapleyValueSampling": Knob("n_samples", 25, "feature permutations sampled", minimum=1, abbreviation="samples"),
    "KernelShap": Knob("n_samples", 200, "coalitions sampled", minimum=1, abbreviation="samples"),
    "Lime": Knob("n_samples", 200, "perturbations sampled", minimum=1, abbreviation="samples"),
}
LLM_DESCRIPTION = "Captum's {wrapper} over {inner}: the prompt tokens' share in the generated target"

for inner, cost in (
    (ca.FeatureAblation, llm_ablation),
    (ca.ShapleyValueSampling, llm_shapley_sampling),
    (ca.KernelShap, llm_surrogate),
    (ca.Lime, llm_surrogate),
):
    name = inner.__name__
    sampled = name in N_SAMPLES
    register_method(
        LLMMethodSpec(
            f"LLM-{name}",
            inner,
            "feature",
            "perturbation",
            cost,
            PERTURBATION_KNOBS + ((N_SAMPLES[name],) if sampled else ()),
            stochastic=sampled,
            reference="more_samples" if sampled else None,
            sample_knob="n_samples" if sampled else None,
            description=LLM_DESCRIPTION.format(wrapper="LLMAttribution", inner=name),
        )
    )

register_method(
    LLMMethodSpec(
        "LLM-LayerIntegratedGradients",
        ca.LayerIntegratedGradients,
        "layer",
        "gradient",
        llm_layer_path_integral,
        (TARGET_LENGTH, *IG_KNOBS),
        check=_check_integration,
        reference="path",
        backward_reach="to_layer",
        wrapper=ca.LLMGradientAttribution,
        description=LLM_DESCRIPTION.format(wrapper="LLMGradientAttribution", inner="LayerIntegratedGradients"),
    )
)
