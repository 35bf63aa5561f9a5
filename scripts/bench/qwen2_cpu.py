#!/usr/bin/env python3
"""The workloads of `cargo bench -p resa-qwen2` in PyTorch + transformers, for comparison
on the same machine: prefill of 1 x 256 tokens (all logits) and greedy decoding of 32 tokens
after a 64-token prompt, f32, on a Qwen2 of about 24M parameters with random weights.

    python scripts/bench/qwen2_cpu.py [--threads 2]
"""
import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def timeit(fn, warmup=2, reps=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="eager", help="eager or sdpa")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Qwen2Config(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True,
                      max_position_embeddings=2048, use_sliding_window=False)
    cfg._attn_implementation = args.attn
    model = Qwen2ForCausalLM(cfg).eval()
    ids = (torch.arange(256) * 7919 % cfg.vocab_size).unsqueeze(0)
    with torch.no_grad():
        t = timeit(lambda: model(ids).logits)
        print(f"prefill_1x256: {t * 1e3:.1f} ms  ({256 / t:.0f} tokens/s)")
        prompt = ids[:, :64]
        t = timeit(lambda: model.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0), reps=5)
        print(f"greedy_decode_32_after_64: {t * 1e3:.1f} ms  ({32 / t:.0f} tokens/s)")
    print(f"torch {torch.__version__}, threads {args.threads}, attention {args.attn}")


if __name__ == "__main__":
    main()
