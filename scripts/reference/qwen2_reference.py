#!/usr/bin/env python3
"""Reference values for resa-qwen2, computed with Hugging Face transformers.

Makes tiny random Qwen2 checkpoints in HF format (tied and untied heads, several GQA ratios,
both config.json styles, f32 / bf16 sharded / f16 weights) and dumps, from transformers:
logits, hookpoint activations (captured with forward hooks on `model.layers.N` and
`model.layers.N.mlp`, exactly as sparsify captures them), logits of a left-padded batch and
greedy continuations of a batch of prompts of different lengths.

    python scripts/reference/qwen2_reference.py crates/resa-qwen2/tests/fixtures

Each case folder holds the checkpoint (config.json, safetensors) and `reference.safetensors`.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

CASES = {
    # name: (config overrides, stored dtype, shard size or None, config style)
    "tied_gqa_f32_old": (dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True), torch.float32, None, "old"),
    "untied_mqa_bf16_sharded_new": (dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False), torch.bfloat16, "40KB", "new"),
    "untied_mha_f16_old": (dict(num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=1000.0), torch.float16, None, "old"),
}

BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
            use_sliding_window=False, hidden_act="silu", bos_token_id=1, eos_token_id=2,
            attention_dropout=0.0)


def hooked_forward(model, **kwargs):
    """Runs the model and captures `layers.N` and `layers.N.mlp` as sparsify does."""
    acts, handles = {}, []
    for i, layer in enumerate(model.model.layers):
        def grab(name):
            def hook(_module, _inp, out):
                acts[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
            return hook
        handles.append(layer.register_forward_hook(grab(f"layers.{i}")))
        handles.append(layer.mlp.register_forward_hook(grab(f"layers.{i}.mlp")))
    try:
        with torch.no_grad():
            out = model(**kwargs)
    finally:
        for h in handles:
            h.remove()
    return out.logits.float(), acts


def make_case(root, name, overrides, dtype, shard, style):
    torch.manual_seed(sum(map(ord, name)))
    cfg = Qwen2Config(**{**BASE, **overrides})
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layernorm" in pname or pname == "model.norm.weight":
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
        # The stored dtype is what the Rust side reads: round the weights to it and
        # compute the reference in f32 from the rounded weights.
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    out_dir = os.path.join(root, name)
    os.makedirs(out_dir, exist_ok=True)
    model.to(dtype).save_pretrained(out_dir, max_shard_size=shard or "1GB", safe_serialization=True)
    # Reload the saved checkpoint in f32, as a user would: converting the in-memory model
    # back with .to(float32) would keep a bf16-rounded RoPE inv_freq buffer.
    model = Qwen2ForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        c = json.load(f)
    if style == "old":
        # transformers < 4.56 style: torch_dtype and rope_theta at the top level.
        c["torch_dtype"] = c.pop("dtype", None) or c.pop("torch_dtype", None)
        c.pop("layer_types", None)
        if "rope_parameters" in c:  # transformers >= 5 writes the new style
            c["rope_theta"] = c.pop("rope_parameters")["rope_theta"]
    else:
        if "rope_theta" in c:  # transformers < 5 writes the old style
            c["rope_parameters"] = {"rope_type": "default", "rope_theta": c.pop("rope_theta")}
        c["dtype"] = c.pop("torch_dtype", None) or c.pop("dtype", None)
        c["layer_types"] = ["full_attention"] * c["num_hidden_layers"]
        c["sliding_window"] = None
    with open(path, "w") as f:
        json.dump(c, f, indent=2)

    g = torch.Generator().manual_seed(1)
    V = cfg.vocab_size
    ref = {}
    ids = torch.randint(3, V, (2, 11), generator=g)
    logits, acts = hooked_forward(model, input_ids=ids)
    ref["input_ids"] = ids
    ref["logits"] = logits
    for k, v in acts.items():
        ref[k] = v.float()

    # Left-padded batch with transformers' generate-style positions.
    lens = [11, 7, 4]
    pad = max(lens)
    pids = torch.full((3, pad), 0, dtype=torch.long)
    mask = torch.zeros((3, pad), dtype=torch.long)
    for r, n in enumerate(lens):
        pids[r, pad - n:] = torch.randint(3, V, (n,), generator=g)
        mask[r, pad - n:] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    plogits, pacts = hooked_forward(model, input_ids=pids, attention_mask=mask, position_ids=pos)
    ref["padded_input_ids"] = pids
    ref["padded_attention_mask"] = mask
    ref["padded_position_ids"] = pos
    ref["padded_logits"] = plogits
    ref["padded_layers.1"] = pacts["layers.1"].float()

    # Greedy generation, batched prompts of different lengths (left padding).
    with torch.no_grad():
        gen = model.generate(input_ids=pids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                             pad_token_id=0, eos_token_id=2)
    ref["generate_output"] = gen
    ref["generate_prompt_lengths"] = torch.tensor(lens, dtype=torch.long)
    with torch.no_grad():
        single = model.generate(input_ids=pids[:1], max_new_tokens=12, do_sample=False, pad_token_id=0,
                                eos_token_id=2)
    ref["generate_single_output"] = single

    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out_dir, "reference.safetensors"))
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(f"Written by scripts/reference/qwen2_reference.py (transformers {__import__('transformers').__version__},"
                f" torch {torch.__version__}).\nStored dtype {dtype}, config style {style}, shards {shard}.\n")
    print(f"{name}: ok")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "crates/resa-qwen2/tests/fixtures"
    torch.set_num_threads(2)
    for name, (overrides, dtype, shard, style) in CASES.items():
        make_case(root, name, overrides, dtype, shard, style)


if __name__ == "__main__":
    main()
