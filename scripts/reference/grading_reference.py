#!/usr/bin/env python3
"""Grading cases labelled by math-verify (pinned), for resa-grade's agreement test.

    python scripts/reference/grading_reference.py ../shared/data/eval crates/resa-grade/tests/fixtures/grading_cases.jsonl

Gold answers come from the shipped math sets; each is put into several completion forms
(boxed with the paper's "final answer is" sentence, bare boxed, "The answer is $…$",
"Final Answer: …" plain, "x = …", \\dfrac spelling), right and wrong (another problem's
answer of the same set; for integers also the neighbour), and the forms real answers take
(percent signs and words, `{,}` and space thousands separators, degrees, units in `\\text`,
`\\left(…\\right)`, answers joined by "or"/"and", several boxes, equations with a compound
left side, approximations). Labels are math-verify's `verify(parse(gold), parse(completion))`
under the paper's configuration per benchmark (`config`): AIME/AMC `answer` (gold = the
answer column, expression extraction); MATH-500/Minerva `solution` (gold = the solution text,
LaTeX extraction); predictions Expr + LaTeX with boxed first, `float_rounding=5`.
"""
import json
import os
import random
import sys

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

GOLD_CFG = {"answer": [ExprExtractionConfig()], "solution": [LatexExtractionConfig()]}
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
        yield f"{int(ans):,}".replace(",", "{,}")
        yield f"{int(ans):,}".replace(",", "\\,")
    if ans.lstrip("-").isdigit():
        yield f"{ans}\\%"
        yield f"{ans}^\\circ"
        yield f"{ans} \\text{{ cm}}"
        yield f"x \\approx {ans}"
    if ans.startswith("(") or ans.startswith("\\left("):
        yield ans.replace("\\left(", "(").replace("\\right)", ")")
        yield f"(x, y) = {ans}"


EXTRA_FORMS = [
    "So we get $X$ or $X$, and the answer is $\\boxed{X}$.",
    "Thus the percentage is X percent.",
    "Therefore $f(1) = X$.",
    "The answer is \\boxed{X} and \\boxed{X}.",
    "**Final Answer**\n\\[\n\\boxed{X}\n\\]",
]


def main():
    src, out = sys.argv[1], sys.argv[2]
    rng = random.Random(0)
    cases = []
    for bench in ["aime24", "aime25", "amc23", "math500", "minerva"]:
        with open(os.path.join(src, f"{bench}.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        golds = [r["answer"] for r in rows]
        config = "solution" if bench in ("math500", "minerva") else "answer"
        for i, row in enumerate(rows):
            gold = row["answer"]
            gold_text = row["meta"]["solution"] if config == "solution" else gold
            wrong = golds[(i + 1 + rng.randrange(len(golds) - 1)) % len(golds)]
            answers = [(v, None) for v in variants(gold)] + [(wrong, None)]
            if gold.lstrip("-").isdigit():
                answers.append((str(int(gold) + 1), None))
            fs = list(forms("X")) + EXTRA_FORMS
            for ans, _ in answers:
                for form in rng.sample(fs, 2):
                    cases.append({"bench": bench, "config": config, "gold": gold_text, "completion": form.replace("X", ans)})
    g_cache = {}
    for c in cases:
        key = (c["config"], c["gold"])
        if key not in g_cache:
            g_cache[key] = parse(c["gold"], extraction_config=GOLD_CFG[c["config"]])
        pred = parse(c["completion"], extraction_config=PRED_CFG)
        c["label"] = bool(verify(g_cache[key], pred, float_rounding=5))
    with open(out, "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print(f"wrote {len(cases)} cases ({sum(c['label'] for c in cases)} correct) to {out}")


if __name__ == "__main__":
    main()
