#!/usr/bin/env python3
"""Reference values for resa-tune's Stage II step, computed with transformers + PEFT +
sparsify the way Resa's code splices the SAE (a forward hook on the decoder layer whose
output is replaced by the SAE's reconstruction, no error term).

    SPARSIFY_DISABLE_TRITON=1 python scripts/reference/stage2_reference.py \
        crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old \
        crates/resa-sae/tests/fixtures/signum/final/layers.1 \
        crates/resa-lora/tests/fixtures/all7_tied_gqa/adapter \
        crates/resa-tune/tests/fixtures

For each gradient mode writes `stage2_<mode>.safetensors` with `input_ids` [2, 9], `kl` [1]
and `grad.<PEFT key without base_model.model. and .default>` for every LoRA matrix with a
gradient (PEFT's shapes), in eval mode (dropout off):
  detach            the SAE runs under no_grad on the detached activation (Resa's code)
  straight-through  forward value = SAE(x), backward = identity: x + (SAE(x) - x).detach()
teacher = the model with the adapter disabled and no SAE; loss =
F.kl_div(log_softmax(student), softmax(teacher), reduction="batchmean").
"""
import os
import sys

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
import torch  # noqa: E402

if not torch.cuda.is_available():
    torch.cuda.is_bf16_supported = lambda *a, **k: False

import torch.nn.functional as F  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sparsify import SparseCoder  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

LAYER = 1


def main():
    model_dir, sae_dir, adapter_dir, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(3, 96, (2, 9), generator=g)
    sae = SparseCoder.load_from_disk(sae_dir)
    for mode in ["detach", "straight-through"]:
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True).eval()
        with torch.no_grad(), model.disable_adapter():
            teacher = model(input_ids=ids).logits

        def hook(_m, _i, output):
            h = output[0] if isinstance(output, tuple) else output
            with torch.no_grad():
                flat = h.detach().flatten(0, 1)
                recon = sae(flat).sae_out.reshape(h.shape).to(h.dtype)
            new = recon if mode == "detach" else h + (recon - h).detach()
            return (new, *output[1:]) if isinstance(output, tuple) else new

        layer = model.base_model.model.model.layers[LAYER]
        handle = layer.register_forward_hook(hook)
        student = model(input_ids=ids).logits
        handle.remove()
        kl = F.kl_div(F.log_softmax(student, dim=-1), F.softmax(teacher, dim=-1), reduction="batchmean")
        kl.backward()
        ref = {"input_ids": ids, "kl": kl.detach().reshape(1)}
        for name, p in model.named_parameters():
            if "lora_" in name and p.grad is not None:
                key = name.removeprefix("base_model.model.").replace(".default", "")
                ref[f"grad.{key}"] = p.grad.detach().clone().contiguous()
        save_file(ref, os.path.join(out, f"stage2_{mode}.safetensors"))
        print(f"{mode}: kl {kl.item():.6f}, {len(ref) - 2} gradients")


if __name__ == "__main__":
    main()
