#!/usr/bin/env python3
"""Grading cases labelled by math-verify (pinned), for resa-eval's agreement test.

    python scripts/reference/grading_reference.py ../shared/data/eval crates/resa-eval/tests/fixtures/grading_cases.jsonl

Gold answers come from the shipped math sets; each is put into several completion forms
(boxed with the paper's "final answer is" sentence, bare boxed, "The answer is $…$",
"Final Answer: …" plain, "x = …", \\dfrac spelling), right and wrong (another problem's
answer of the same set; for integers also the neighbour). Labels are math-verify's
`verify(parse(gold), parse(completion))` with the extraction targets lighteval's math tasks
use (gold: Expr + LaTeX; prediction: Expr + LaTeX with boxed first), gold wrapped as
`\\boxed{gold}`.
"""
import json
import os
import random
import sys

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

GOLD_CFG = [ExprExtractionConfig(), LatexExtractionConfig()]
PRED_CFG = [ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)]


def forms(ans):
    yield f"Let me work it out step by step. Therefore, the final answer is: $\\boxed{{{ans}}}$. I hope it is correct"
    yield f"We find the value, so the result is \\boxed{{{ans}}}."
    yield f"Putting it together, the answer is ${ans}$."
    yield f"Final Answer: {ans}"
    yield f"Solving gives $x = {ans}$, which is the final answer."


def variants(ans):
    yield ans
    if "\\frac" in ans:
        yield ans.replace("\\frac", "\\dfrac")
    if ans.isdigit() and len(ans) > 3:
        yield f"{int(ans):,}"


def main():
    src, out = sys.argv[1], sys.argv[2]
    rng = random.Random(0)
    cases = []
    for bench in ["aime24", "aime25", "amc23", "math500", "minerva"]:
        with open(os.path.join(src, f"{bench}.jsonl")) as f:
            golds = [json.loads(line)["answer"] for line in f if line.strip()]
        for i, gold in enumerate(golds):
            wrong = golds[(i + 1 + rng.randrange(len(golds) - 1)) % len(golds)]
            answers = [(v, None) for v in variants(gold)] + [(wrong, None)]
            if gold.lstrip("-").isdigit():
                answers.append((str(int(gold) + 1), None))
            fs = list(forms("X"))
            for ans, _ in answers:
                for form in rng.sample(fs, 2):
                    cases.append({"bench": bench, "gold": gold, "completion": form.replace("X", ans)})
    g_cache = {}
    for c in cases:
        if c["gold"] not in g_cache:
            g_cache[c["gold"]] = parse("\\boxed{" + c["gold"] + "}", extraction_config=GOLD_CFG)
        pred = parse(c["completion"], extraction_config=PRED_CFG)
        c["label"] = bool(verify(g_cache[c["gold"]], pred))
    with open(out, "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print(f"wrote {len(cases)} cases ({sum(c['label'] for c in cases)} correct) to {out}")


if __name__ == "__main__":
    main()
