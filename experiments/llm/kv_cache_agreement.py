"""Does Captum's KV-cache path score what the uncached paths score? LLM-FeatureAblation on the
trained reviews_lm_32 (4 prompts, 4 generated tokens) three ways: token by token with the cache
(Captum's default), token by token without it, and prompt + target in one forward; and, as a
control, one cached decoding step of the model itself against its uncached forward.

    PYTHONPATH=. python -m experiments.llm.kv_cache_agreement
"""

from __future__ import annotations

import torch

from attrib_core.run import RunConfig, prepare


def attributions(cache: bool, in_tokens: bool) -> tuple[torch.Tensor, object]:
    knobs = {"target_length": 4, "use_cached_outputs": cache, "forward_in_tokens": in_tokens}
    prepared = prepare(RunConfig("LLM-FeatureAblation", "reviews_lm_32", batch_size=4, knobs=knobs))
    return prepared().attributions, prepared


def main() -> None:
    torch.set_num_threads(1)
    cached, _ = attributions(True, True)
    uncached, prepared = attributions(False, True)
    one_forward, _ = attributions(False, False)
    scale = uncached.abs().amax(1)
    share = (cached - uncached).abs().amax(1) / scale
    print("cached vs uncached, max |difference| / max |attribution| per prompt:", [f"{v:.3f}" for v in share])
    share = (one_forward - uncached).abs().amax(1) / scale
    print("one forward vs uncached, same:", [f"{v:.1e}" for v in share])
    lm, ids = prepared.workload.model.model, prepared.workload.inputs[:1]
    with torch.no_grad():
        past = lm(input_ids=ids, use_cache=True).past_key_values
        step = lm(input_ids=ids[:, -1:], past_key_values=past, use_cache=True).logits[0, -1]
        full = lm(input_ids=torch.cat([ids, ids[:, -1:]], 1), use_cache=False).logits[0, -1]
    print(f"control: one cached step vs the uncached forward, max |logit difference| {(step - full).abs().max():.1e}")


if __name__ == "__main__":
    main()
