#!/usr/bin/env python3
"""Reference values for resa-lora, computed with PEFT and transformers (pinned).

    python scripts/reference/lora_reference.py crates/resa-qwen2/tests/fixtures crates/resa-lora/tests/fixtures

Writes, under the output folder:
  other_model/          a second random checkpoint with tied_gqa_f32_old's shapes
  <case>/adapter/       a PEFT adapter folder (PEFT's own save_pretrained), lora_B non-zero
  <case>/expected.safetensors
                        `input_ids` [2, 7] and `logits` of base + adapter (eval mode), and
                        `logits_merged` of PEFT's merge_and_unload() model
Cases:
  all7_tied_gqa      r 4, alpha 8, dropout 0.05, all seven linear layers, on tied_gqa_f32_old
                     (also `logits_on_other`: the same adapter attached to other_model)
  subset_rslora_mha  r 8, alpha 16, rsLoRA, q_proj/v_proj/down_proj of layers 0 and 2, on
                     untied_mha_f16_old (run in f32)
  regex_other        target_modules as a regular expression, on other_model

    python scripts/reference/lora_reference.py --check-adapter DIR BASE
    python scripts/reference/lora_reference.py --check-merged DIR

load an adapter folder written by resa-lora with PEFT (onto BASE), or a merged checkpoint
written by resa-lora with transformers, and compare their logits on DIR/check.safetensors
(`input_ids`, `logits` computed by resa) — the interoperability checks.
"""
import os
import shutil
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def make_other(qwen_fixtures, out):
    path = os.path.join(out, "other_model")
    shutil.rmtree(path, ignore_errors=True)
    cfg = Qwen2Config.from_pretrained(os.path.join(qwen_fixtures, "tied_gqa_f32_old"))
    torch.manual_seed(99)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05) if p.dim() > 1 else p.uniform_(0.8, 1.2)
    model.save_pretrained(path, safe_serialization=True)
    return path


def make_case(out, name, base_path, cfg, ids, extra_bases=()):
    case = os.path.join(out, name)
    shutil.rmtree(case, ignore_errors=True)
    torch.manual_seed(sum(map(ord, name)))
    model = get_peft_model(load(base_path), cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2)
    model.save_pretrained(os.path.join(case, "adapter"))
    os.remove(os.path.join(case, "adapter", "README.md"))  # PEFT's model card: not needed
    model.eval()
    ref = {"input_ids": ids}
    with torch.no_grad():
        ref["logits"] = model(input_ids=ids).logits.float().contiguous()
        for label, other in extra_bases:
            attached = PeftModel.from_pretrained(load(other), os.path.join(case, "adapter")).eval()
            ref[f"logits_on_{label}"] = attached(input_ids=ids).logits.float().contiguous()
        merged = model.merge_and_unload()
        ref["logits_merged"] = merged(input_ids=ids).logits.float().contiguous()
    d = (ref["logits"] - ref["logits_merged"]).abs().max().item()
    assert d < 1e-4, f"{name}: PEFT's merge changes logits by {d}"
    save_file(ref, os.path.join(case, "expected.safetensors"))


def check_adapter(dir_, base):
    data = load_file(os.path.join(dir_, "check.safetensors"))
    model = PeftModel.from_pretrained(load(base), dir_).eval()
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"]).logits.float()
    err = (logits - data["logits"]).abs().max().item()
    print(f"{dir_}: PEFT loaded it onto {base}; max |logits diff| = {err:.3g}")
    return err <= 1e-4


def check_merged(dir_):
    data = load_file(os.path.join(dir_, "check.safetensors"))
    model = load(dir_)
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"]).logits.float()
    err = (logits - data["logits"]).abs().max().item()
    print(f"{dir_}: transformers loaded it; max |logits diff| = {err:.3g}")
    return err <= 1e-4


def main():
    if sys.argv[1] == "--check-adapter":
        sys.exit(0 if check_adapter(sys.argv[2], sys.argv[3]) else 1)
    if sys.argv[1] == "--check-merged":
        sys.exit(0 if check_merged(sys.argv[2]) else 1)
    qwen, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    other = make_other(qwen, out)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 96, (2, 7), generator=g)
    tied = os.path.join(qwen, "tied_gqa_f32_old")
    make_case(out, "all7_tied_gqa", tied,
              LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=ALL7, task_type="CAUSAL_LM"),
              ids, extra_bases=[("other", other)])
    make_case(out, "subset_rslora_mha", os.path.join(qwen, "untied_mha_f16_old"),
              LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"],
                         layers_to_transform=[0, 2], task_type="CAUSAL_LM"), ids)
    make_case(out, "regex_other", other,
              LoraConfig(r=2, lora_alpha=6, target_modules=r".*layers\.[12]\.(self_attn\.k_proj|mlp\.up_proj)",
                         task_type="CAUSAL_LM"), ids)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
