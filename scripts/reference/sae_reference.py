#!/usr/bin/env python3
"""Reference values for resa-sae, computed with EleutherAI sparsify (eai-sparsify, pinned).

Runs sparsify's own `Trainer` on a tiny Qwen2 checkpoint (the `tied_gqa_f32_old` fixture of
resa-qwen2) and records, besides what sparsify saves, the exact activations each SAE was
trained on, so that resa-sae can be checked both step by step (same inputs) and end to end
(same model and token ids):

    SPARSIFY_DISABLE_TRITON=1 python scripts/reference/sae_reference.py \
        crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old crates/resa-sae/tests/fixtures

Cases (each a folder under the output):
  signum/   Signum + schedule-free (sparsify's default), scratch, AuxK on with a small
            dead-feature threshold, two hookpoints (`layers.1`, `layers.2.mlp`) in one pass.
  adam/     Adam with warm-up, fine-tuned from signum's result (b_dec kept), Multi-TopK on.
Each holds `init/<hookpoint>/` (the SAE before training, sparsify format), `final/<hookpoint>/`
(what sparsify's checkpoint holds after the run), `steps.safetensors` (per hookpoint and
step: `acts.<hp>.<step>` [n, d], `fvu.<hp>.<step>`; after the run `y.<hp>.<param>`, the live
parameters, and `counts.<hp>`, tokens since each latent fired) and `run.json` (options).
Also `input_ids.json` (the token ids of every step) and `encode/` (an SAE folder, an input
file as `resa sae encode` reads it and the expected outputs of sparsify's forward).

    python scripts/reference/sae_reference.py --check DIR

loads the SAE folder DIR (written by resa-sae) with sparsify and checks that its forward on
DIR/check.safetensors (`x`) matches the `sae_out` stored there.
"""
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
import torch  # noqa: E402

if not torch.cuda.is_available():
    torch.cuda.is_bf16_supported = lambda *a, **k: False  # sparsify's autocast asks at import

from datasets import Dataset  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from sparsify import SaeConfig, SparseCoder, Trainer, TrainConfig  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

HOOKS = ["layers.1", "layers.2.mlp"]
SEQ, BATCH, STEPS = 16, 2, 4
LATENTS, K = 128, 8


def token_ids(vocab, steps):
    g = torch.Generator().manual_seed(1234)
    return torch.randint(3, vocab, (steps * BATCH, SEQ), generator=g)


def run_case(model, ids, out, name, sae_cfg, train_kw, init_from=None):
    case = os.path.join(out, name)
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(case)
    ds = Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(sae_cfg, batch_size=BATCH, hookpoints=list(HOOKS), log_to_wandb=False,
                          save_dir=tmp, run_name="run", save_every=10_000, init_seeds=[0],
                          finetune=init_from, **train_kw)
        trainer = Trainer(cfg, ds, model)
        if init_from is not None:
            for hp, sae in trainer.saes.items():
                src = SparseCoder.load_from_disk(os.path.join(init_from, hp))
                sae.load_state_dict(src.state_dict())
        for hp, sae in trainer.saes.items():
            sae.save_to_disk(os.path.join(case, "init", hp))

        # Record what each SAE is trained on: the hookpoint outputs of every batch.
        record = {}
        step = {"i": 0}
        handles = []
        for hp in HOOKS:
            mod = model.base_model.get_submodule(hp)

            def grab(hp):
                def hook(_m, _i, o):
                    o = o[0] if isinstance(o, tuple) else o
                    record[f"acts.{hp}.{step['i']}"] = o.detach().flatten(0, 1).clone().float()
                return hook
            handles.append(mod.register_forward_hook(grab(hp)))

        # Count steps through the optimizer and record the FVU sparsify computes.
        orig_forward = SparseCoder.forward
        names = {id(s): hp for hp, s in trainer.saes.items()}

        def forward(self, *a, **kw):
            res = orig_forward(self, *a, **kw)
            record[f"fvu.{names[id(self)]}.{step['i']}"] = res.fvu.detach().reshape(1).clone()
            return res
        SparseCoder.forward = forward
        opt_step = trainer.optimizers[0].step

        def counted_step(*a, **kw):
            r = opt_step(*a, **kw)
            step["i"] += 1
            return r
        trainer.optimizers[0].step = counted_step
        try:
            trainer.fit()
        finally:
            SparseCoder.forward = orig_forward
            for h in handles:
                h.remove()
        for hp, sae in trainer.saes.items():
            for pname, p in sae.named_parameters():
                record[f"y.{hp}.{pname}"] = p.detach().clone()
            record[f"counts.{hp}"] = trainer.num_tokens_since_fired[hp].clone()
        for hp in HOOKS:
            shutil.copytree(os.path.join(tmp, "run", hp), os.path.join(case, "final", hp))
    save_file({k: v.contiguous() for k, v in record.items()}, os.path.join(case, "steps.safetensors"))
    with open(os.path.join(case, "run.json"), "w") as f:
        json.dump({"hookpoints": HOOKS, "batch_size": BATCH, "seq_len": SEQ, "steps": STEPS,
                   "sae": sae_cfg.to_dict(), "train": train_kw, "finetune": init_from is not None}, f, indent=1)
    return case


def encode_case(out, sae_dir, acts):
    case = os.path.join(out, "encode")
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(case)
    shutil.copytree(sae_dir, os.path.join(case, "sae"))
    sae = SparseCoder.load_from_disk(sae_dir)
    g = torch.Generator().manual_seed(7)
    x = acts[:24].clone()
    dead = torch.rand(sae.num_latents, generator=g) < 0.25
    with torch.no_grad():
        res = sae(x, dead_mask=dead)
    assert (res.latent_acts > 0).all(), "a selected latent is exactly 0: ties make the order ambiguous"
    order = res.latent_indices.argsort(dim=-1)
    save_file({"x": x, "dead_mask": dead.to(torch.uint8)}, os.path.join(case, "input.safetensors"))
    save_file({
        "top_acts": res.latent_acts.gather(-1, order).contiguous(),
        "top_indices": res.latent_indices.gather(-1, order).contiguous(),
        "sae_out": res.sae_out.contiguous(),
        "fvu": res.fvu.reshape(1),
        "auxk_loss": res.auxk_loss.reshape(1),
    }, os.path.join(case, "expected.safetensors"))


def check(dir_):
    sae = SparseCoder.load_from_disk(dir_)
    data = load_file(os.path.join(dir_, "check.safetensors"))
    with torch.no_grad():
        res = sae(data["x"])
    err = (res.sae_out - data["sae_out"]).abs().max().item()
    print(f"{dir_}: sparsify loaded it (d_in {sae.d_in}, {sae.num_latents} latents, k {sae.cfg.k}); "
          f"max |sae_out diff| = {err:.3g}")
    if err > 1e-5:
        sys.exit(1)


def main():
    if sys.argv[1] == "--check":
        for d in sys.argv[2:]:
            check(d)
        return
    model_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = token_ids(model.config.vocab_size, STEPS)
    with open(os.path.join(out, "input_ids.json"), "w") as f:
        json.dump(ids.tolist(), f)

    signum = run_case(model, ids, out, "signum", SaeConfig(num_latents=LATENTS, k=K),
                      dict(optimizer="signum", auxk_alpha=1 / 32, dead_feature_threshold=40))
    run_case(model, ids, out, "adam", SaeConfig(num_latents=LATENTS, k=K, multi_topk=True),
             dict(optimizer="adam", lr_warmup_steps=2), init_from=os.path.join(signum, "final"))
    acts = load_file(os.path.join(signum, "steps.safetensors"))["acts.layers.1.0"]
    encode_case(out, os.path.join(signum, "final", "layers.1"), acts)

    # An older cfg.json (no `activation`, `transcode`) with an unknown key must still load.
    old = os.path.join(out, "old_cfg")
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(os.path.join(signum, "final", "layers.1"), old)
    with open(os.path.join(old, "cfg.json")) as f:
        cfg = json.load(f)
    cfg.pop("activation")
    cfg.pop("transcode")
    cfg["some_future_key"] = [1, 2]
    with open(os.path.join(old, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
