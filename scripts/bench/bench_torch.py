"""The workloads of `resa bench` (crates/resa-bench/src/lib.rs) in PyTorch: transformers, PEFT, sparsify.

Same shapes, random weights, one warm-up then REPEATS timed runs, median time → tokens/s,
and the same FLOP estimates (so the same TFLOP/s and MFU). Prints the same Markdown table as
`resa bench` (or JSON lines with --json).

    pip install -r scripts/reference/requirements.txt
    SPARSIFY_DISABLE_TRITON=1 python scripts/bench/bench_torch.py --threads 2
    python scripts/bench/bench_torch.py --device cuda --size 1.5b --dtype bf16 --peak-tflops 989
"""

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

if not torch.cuda.is_available():
    torch.cuda.is_bf16_supported = lambda *a, **k: False  # sparsify asks at import time

from peft import LoraConfig, get_peft_model  # noqa: E402
from sparsify import SparseCoder, SparseCoderConfig  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

WORKLOADS = ["gemm", "gemm_numpy", "prefill", "stage2_step", "sae_step", "decode_b1", "decode_b8"]


def qwen25_05b():
    return Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1_000_000.0, tie_word_embeddings=True,
        attn_implementation="sdpa", torch_dtype=torch.float32,
    )


def r1_distill_15b(dtype):
    return Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        attn_implementation="sdpa", torch_dtype=dtype,
    )


def stack_params(c):
    h, i = c.hidden_size, c.intermediate_size
    hd = c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    return (h * q + 2 * h * kv + q * h + 3 * h * i) * c.num_hidden_layers


def forward_flops(c, t, past, layers, head_tokens):
    """As crates/resa-bench/src/lib.rs: matmuls 2·params per token, causal attention, the head."""
    per_layer = stack_params(c) / c.num_hidden_layers
    q = c.num_attention_heads * (c.hidden_size // c.num_attention_heads)
    attention = 4.0 * q * (t * past + t * t / 2.0)
    return layers * (2.0 * t * per_layer + attention) + 2.0 * head_tokens * c.hidden_size * c.vocab_size


def stage2_model():
    return Qwen2Config(
        vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True, attn_implementation="sdpa",
    )


def ids(n, vocab, salt):
    return torch.tensor([[(i * 7919 + salt * 104729) % vocab for i in range(n)]])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(name, tokens, flops, repeats, fn, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        seconds.append(time.perf_counter() - t)
    med = statistics.median(seconds)
    return {"name": name, "tokens": tokens, "seconds": seconds, "median_seconds": med,
            "tokens_per_second": tokens / med, "peak_rss_mib": peak_rss_mib(),
            "flops": flops, "tflops_per_second": flops / med / 1e12}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--size", default="cpu", choices=["cpu", "1.5b"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()
    big = args.size == "1.5b"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    only = [w for w in args.only.split(",") if w]
    wanted = lambda n: not only or n in only  # noqa: E731
    torch.manual_seed(0)
    results = []

    def report(r):
        if args.peak_tflops:
            r["mfu"] = r["tflops_per_second"] / args.peak_tflops
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
            print(f"| {r['name']} | {r['tokens']} | {r['median_seconds']:.3f} | {r['tokens_per_second']:.1f} | "
                  f"{r['tflops_per_second']:.3f} | {mfu} | {r['peak_rss_mib']:.0f} |", flush=True)

    if not args.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {args.dtype}, {args.size} shapes")
        print("| workload | tokens | median s | tokens/s | TFLOP/s | MFU | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|")
    if wanted("gemm"):
        n = 4096 if big else 2048
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)

        def gemm():
            (a @ b)[0, 0].item()

        report(measure("gemm", n, 2.0 * n ** 3, args.repeats, gemm, device))
    if "gemm_numpy" in only:
        # The machine's limit for an f32 GEMM: numpy's BLAS (OpenBLAS in the PyPI wheel), on
        # the CPU only; asked for by name (not part of a run without --only).
        import numpy as np

        n = 4096 if big else 2048
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)

        def gemm_numpy():
            (a @ b)[0, 0].item()

        report(measure("gemm_numpy", n, 2.0 * n ** 3, args.repeats, gemm_numpy, torch.device("cpu")))
    if wanted("prefill") or wanted("decode_b1") or wanted("decode_b8"):
        mcfg = r1_distill_15b(dtype) if big else qwen25_05b()
        model = Qwen2ForCausalLM(mcfg).to(device=device, dtype=dtype).eval()
        layers = mcfg.num_hidden_layers
        if wanted("prefill"):
            n = 2048 if big else 512
            x = ids(n, 151936, 1).to(device)

            def prefill():
                with torch.no_grad():
                    model(x, logits_to_keep=1).logits.cpu()

            report(measure("prefill", n, forward_flops(mcfg, n, 0, layers, 1), args.repeats, prefill, device))
        for name, batch in [("decode_b1", 1), ("decode_b8", 8)]:
            if not wanted(name):
                continue
            x = torch.cat([ids(16, 151936, b + 2) for b in range(batch)]).to(device)

            def decode():
                with torch.no_grad():
                    out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=128,
                                         min_new_tokens=128, pad_token_id=0)
                assert out.shape[1] == 16 + 128

            flops = batch * (forward_flops(mcfg, 16, 0, layers, 1)
                             + sum(forward_flops(mcfg, 1, 16 + p, layers, 1) for p in range(127)))
            report(measure(name, batch * 128, flops, args.repeats, decode, device))
        del model
    if wanted("stage2_step"):
        cfg = r1_distill_15b(dtype) if big else stage2_model()
        seq, latents, at = (2048, 65536, 12) if big else (512, 16 * 512, 2)
        base = Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)
        peft_cfg = LoraConfig(r=32, lora_alpha=128, lora_dropout=0.05, bias="none",
                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(base, peft_cfg)
        sae = SparseCoder(cfg.hidden_size, SparseCoderConfig(num_latents=latents, k=32), device=device, dtype=dtype)
        sae.requires_grad_(False)
        layer = model.base_model.model.model.layers[at]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.01)
        x = ids(seq, cfg.vocab_size, 10).to(device)
        state = {"splice": False}

        def hook(_mod, _inp, out):
            if not state["splice"]:
                return out
            h = out[0] if isinstance(out, tuple) else out
            with torch.no_grad():
                recon = sae(h.flatten(0, 1)).sae_out.view_as(h)
            return (recon,) + tuple(out[1:]) if isinstance(out, tuple) else recon

        layer.register_forward_hook(hook)

        def step():
            model.train()
            with torch.no_grad(), model.disable_adapter():
                state["splice"] = False
                teacher = model(x).logits
            state["splice"] = True
            student = model(x).logits
            state["splice"] = False
            loss = F.kl_div(F.log_softmax(student, -1), F.softmax(teacher, -1), reduction="batchmean")
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad()

        layers = cfg.num_hidden_layers
        flops = (2 * forward_flops(cfg, seq, 0, layers, seq) + forward_flops(cfg, seq, 0, layers - at - 1, seq)
                 + 2.0 * seq * cfg.hidden_size * latents)
        report(measure("stage2_step", seq, flops, args.repeats, step, device))
    if wanted("sae_step"):
        latents = 65536 if big else 16384
        sae = SparseCoder(1536, SparseCoderConfig(num_latents=latents, k=32), device=device)
        opt = torch.optim.Adam(sae.parameters(), lr=2e-4)
        acts = torch.randn(4096, 1536, device=device)

        def sae_step():
            out = sae(acts)
            out.fvu.backward()
            opt.step()
            opt.zero_grad()

        report(measure("sae_step", 4096, 6.0 * 4096 * 1536 * latents, args.repeats, sae_step, device))


if __name__ == "__main__":
    main()
