"""Hugging Face models: `hf:<model id or local folder>`, the user's own Transformer, offline.

The model is loaded with `local_files_only=True` from a folder (what `save_pretrained` wrote) or
from the local Hugging Face cache (`huggingface-cli download <id>` beforehand): nothing is
downloaded. Its config's architecture decides how it is explained:

- `...ForSequenceClassification`: the class logits, for the class the model predicts;
- `...ForCausalLM` / `...LMHeadModel`: the next-token logits after the prompt, for the token
  the model predicts; with its tokenizer, Captum's LLM wrappers apply too (attrib_core/methods/llm.py).

Inputs are short movie-review-like sentences (preset argument `texts`), through the model's own
tokenizer when the folder has one; without one, seeded random token ids (recorded in `info`).
Layer methods explain the input embeddings (`get_input_embeddings()`); each token is a feature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attrib_core.exits import BadInputError
from attrib_core.workloads.base import Workload, WorkloadSpec
from attrib_core.workloads.plugins import check_contract, declared_traits, knob_tuples
from attrib_core.workloads.traits import Traits

PREFIX = "hf:"
ARGS = ("texts", "length")
TASKS = {"ForSequenceClassification": "classification", "ForCausalLM": "causal_lm", "LMHeadModel": "causal_lm"}
DEFAULT_TEXTS = (
    "a gorgeous, witty and deeply moving film",
    "the plot is thin and the jokes fall flat",
    "an honest, unhurried portrait of a family",
    "it drags on long after its welcome is worn out",
    "the cast is wonderful and the score is even better",
    "a dull, lifeless mess from start to finish",
    "funny, sharp and surprisingly tender",
    "nothing here works, not even the explosions",
)
DEFAULT_LENGTH = 16  # tokens per example, padded or cut


class HFModelUnavailable(BadInputError, ValueError):
    """No local files for an `hf:` workload; the message names the id and where it looked."""


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def load_config(target: str, origin: str) -> Any:
    """The model's config from a local folder or the local cache, or HFModelUnavailable."""
    from transformers import AutoConfig

    folder = Path(target).expanduser()
    try:
        return AutoConfig.from_pretrained(str(folder) if folder.is_dir() else target, local_files_only=True)
    except (OSError, ValueError) as exc:
        if folder.is_dir():  # a folder, but what is in it does not load: say why
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            looked = f"the folder {str(folder.resolve())!r} does not hold a loadable config.json ({first_line[:160]})"
        else:
            looked = f"no folder {str(folder.resolve())!r} and no {target!r} in the Hugging Face cache ({hub_cache()})"
        raise HFModelUnavailable(
            f"{origin}: cannot load Hugging Face model {target!r} offline (local_files_only=True): {looked}; "
            f"save one with model.save_pretrained(folder) or run `huggingface-cli download {target}` where there "
            "is network"
        ) from None


def task_of(config: Any, target: str, origin: str) -> str:
    for architecture in config.architectures or []:
        for suffix, task in TASKS.items():
            if architecture.endswith(suffix):
                return task
    raise HFModelUnavailable(
        f"{origin}: Hugging Face model {target!r} has architectures {config.architectures!r}; "
        f"attrib-bench explains models whose architecture ends with one of {', '.join(TASKS)}"
    )


def hf_spec(
    key: str, target: str, args: Mapping[str, Any], declared: Mapping[str, Any], origin: str, definition: dict
) -> WorkloadSpec:
    """The spec of `hf:<target>`: reads the config (local files only), builds nothing."""
    unknown = sorted(set(args) - set(ARGS))
    if unknown:
        raise ValueError(f"{origin}: unknown argument {unknown[0]!r} for {PREFIX}{target}; valid: {', '.join(ARGS)}")
    config = load_config(target, origin)
    task = task_of(config, target, origin)
    method_defaults = {
        "Occlusion": {"sliding_window_shapes": (3,), "strides": (1,)},
        **knob_tuples(declared.get("method_defaults", {})),
    }
    # a causal LM with a tokenizer takes Captum's LLM wrappers: known once it is built
    defaults = Traits(
        input_kind="tokens", layer_name=None, spatial_layer=False, generates_text=None if task == "causal_lm" else False
    )

    def build() -> Workload:
        return build_hf_workload(key, target, task, args, declared, origin, method_defaults)

    return WorkloadSpec(
        name=key,
        description=declared.get("description", f"Hugging Face {config.model_type} ({task}) from {target}"),
        build=build,
        traits=declared_traits({"input_kind": "tokens", **declared}, defaults),
        method_defaults=method_defaults,
        source="huggingface",
        definition=definition,
        origin=origin,
    )


def _load_tokenizer(path: str) -> Any | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError):
        return None
    # without tokenizer files, transformers may still build an empty tokenizer that encodes nothing
    return tokenizer if len(tokenizer) > 1 and tokenizer(DEFAULT_TEXTS[0])["input_ids"] else None


def token_ids(tokenizer: Any | None, texts: list[str], length: int, vocab_size: int, pad_id: int) -> torch.Tensor:
    """(N, length) ids: the tokenizer's, cut or padded with `pad_id`; without one, seeded random ids."""
    if tokenizer is None:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, vocab_size, (len(texts), length), generator=generator)
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"][:length]
        rows.append(ids + [pad_id] * (length - len(ids)))
    return torch.as_tensor(rows, dtype=torch.long)


def build_hf_workload(
    key: str,
    target: str,
    task: str,
    args: Mapping[str, Any],
    declared: Mapping[str, Any],
    origin: str,
    method_defaults: Mapping[str, Mapping[str, Any]],
) -> Workload:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from attrib_core.models.hf import Logits, NextTokenLogits

    folder = Path(target).expanduser()
    path = str(folder) if folder.is_dir() else target
    auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, local_files_only=True).eval()
    except OSError as exc:  # a config without weights
        raise HFModelUnavailable(f"{origin}: {target!r} has a config but no loadable weights offline: {exc}") from None
    tokenizer = _load_tokenizer(path)
    wrapped = (Logits(model) if task == "classification" else NextTokenLogits(model, tokenizer)).eval()
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    texts = list(args.get("texts", DEFAULT_TEXTS))
    length = int(args.get("length", DEFAULT_LENGTH))
    inputs = token_ids(tokenizer, texts, length, model.config.vocab_size, pad_id)
    with torch.no_grad():
        targets = wrapped(inputs).argmax(1)  # explain what the model predicts, as the zoo does
    embeddings = model.get_input_embeddings()
    layer = next(name for name, module in wrapped.named_modules() if module is embeddings)
    linears = [name for name, module in wrapped.named_modules() if isinstance(module, nn.Linear)]
    workload = Workload(
        name=key,
        model=wrapped,
        inputs=inputs,
        targets=targets,
        baseline=torch.full((1, length), pad_id, dtype=torch.long),
        background=inputs[: min(4, len(inputs))],
        feature_mask=torch.arange(length)[None],
        layer_name=declared.get("layer", layer),
        neuron=(0, 0),
        output_name=linears[-1] if linears else "",
        weights=f"hf:{target}",
        description=declared.get("description", f"Hugging Face {model.config.model_type} ({task}) from {target}"),
        method_defaults=method_defaults,
        info={
            "hf_model": target,
            "task": task,
            "architecture": type(model).__name__,
            "tokens": "the model's tokenizer" if tokenizer is not None else "seeded random ids (no tokenizer found)",
            **(
                {"example_tokens": tokenizer.convert_ids_to_tokens(inputs[0][inputs[0] != pad_id].tolist())}
                if tokenizer is not None
                else {}
            ),
        },
    )
    return dataclasses.replace(check_contract(workload, origin, declared), method_defaults=method_defaults)
