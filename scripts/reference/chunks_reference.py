#!/usr/bin/env python3
"""Reference chunks for resa-data, made with EleutherAI sparsify's `chunk_and_tokenize`.

Renders the shared DeepScaleR AIME set with the reference template (same text as
`resa_data::Template::Reference`), chunks it with sparsify on the R1-Distill tokenizer at
max_seq_len 2048 and 128, and writes counts, the first ids and a SHA-256 over all chunk ids.

    python scripts/reference/chunks_reference.py ../shared/data crates/resa-data/tests/fixtures/chunks.json
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
from datasets import Dataset  # noqa: E402
from sparsify.data import chunk_and_tokenize  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

SYSTEM = ("\nA conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
          "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
          "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
          "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.\n")


def main():
    shared, out = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(os.path.join(shared, "tokenizers/deepseek-r1-distill-qwen"))
    rows = [json.loads(l) for l in open(os.path.join(shared, "train/deepscaler_aime.jsonl"))]
    texts = [f"{SYSTEM}User:\n {r['problem']}\n\nAssistant:\n <think> {r['answer']} </think>\n<answer> Answer: {r['answer']}</answer>"
             for r in rows]
    result = {"source": "train/deepscaler_aime.jsonl", "rows": len(texts)}
    for max_len in (2048, 128):
        ds = chunk_and_tokenize(Dataset.from_dict({"text": texts}), tok, max_seq_len=max_len, num_proc=1,
                                load_from_cache_file=False)
        ids = [list(map(int, c)) for c in ds["input_ids"]]
        h = hashlib.sha256()
        for c in ids:
            h.update(",".join(map(str, c)).encode() + b"\n")
        result[str(max_len)] = {"chunks": len(ids), "first_ids": ids[0][:64], "sha256": h.hexdigest()}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: (v if not isinstance(v, dict) else v["chunks"]) for k, v in result.items()}))


if __name__ == "__main__":
    main()
