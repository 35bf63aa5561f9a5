#!/usr/bin/env python3
"""Labelled grading cases that this project did not write, for resa-grade's agreement tests.

    python scripts/reference/mathverify_suite_reference.py MATH_VERIFY_TESTS_DIR ../shared/data/eval \
        crates/resa-grade/tests/fixtures [LIGHTEVAL_TEST_EXTRACTIVE_MATCH_PY]

MATH_VERIFY_TESTS_DIR is the `tests/` folder of huggingface/Math-Verify (any checkout; the
cases are read from its `pytest.mark.parametrize` lists, not copied by hand). The optional
last argument is lighteval's `tests/unit/metrics/test_extractive_match.py`: its literal
parametrize lists are read with `ast` (lighteval need not be installed); its math cases are
relabelled by math-verify like the suite's, its English letter cases (GPQA's extraction) keep
the verdict lighteval's test asserts (`config = "letters"`). Writes:

- `mathverify_suite.jsonl`: every (gold, pred) pair of math-verify's own test suite,
  relabelled with math-verify's verdict under the settings of the paper's evaluation
  (lighteval's extractive match: gold targets Expr + LaTeX, prediction targets Expr +
  LaTeX with boxed first, `fallback_mode="first_match"`, `float_rounding=5`). `suite_expected`
  is what the suite's own test asserts under its own settings (informational).
- `real_solutions.jsonl`: human-written solutions of MATH-500 and Minerva (text no one here
  wrote) graded as completions against the datasets' answer columns, and each solution as
  the gold of the paper's configuration (LaTeX-only extraction of the solution) against the
  answer column as a completion. Labels are math-verify's.

Configurations (names used by the Rust tests, `resa_grade::GradingConfig`):
  suite    gold [Expr, LaTeX]        pred [Expr, LaTeX(boxed 0)]
  answer   gold [Expr]               pred [Expr, LaTeX(boxed 0)]   (AIME24/25, AMC23)
  solution gold [LaTeX]              pred [Expr, LaTeX(boxed 0)]   (MATH-500, Minerva)
"""
import importlib.util
import json
import os
import sys

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

CONFIGS = {
    "suite": ([ExprExtractionConfig(), LatexExtractionConfig()],),
    "answer": ([ExprExtractionConfig()],),
    "solution": ([LatexExtractionConfig()],),
}
PRED = [ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)]
PRECISION = 5


def label(config, gold, pred):
    g = parse(gold, extraction_config=CONFIGS[config][0], fallback_mode="first_match")
    p = parse(pred, extraction_config=PRED, fallback_mode="first_match")
    return bool(verify(g, p, float_rounding=PRECISION)), [str(x) for x in g], [str(x) for x in p]


def suite_cases(tests_dir):
    sys.path.insert(0, os.path.dirname(os.path.abspath(tests_dir)))
    for name in sorted(os.listdir(tests_dir)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(f"tests.{name[:-3]}", os.path.join(tests_dir, name))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # a test file needing something else: say so, skip it
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        for fname in dir(mod):
            fn = getattr(mod, fname)
            if not fname.startswith("test_") or not callable(fn):
                continue
            for mark in getattr(fn, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                argnames = [a.strip() for a in mark.args[0].split(",")]
                if "gold" not in argnames or "pred" not in argnames:
                    continue
                for values in mark.args[1]:
                    values = getattr(values, "values", values)
                    row = dict(zip(argnames, values))
                    if not isinstance(row["gold"], str) or not isinstance(row["pred"], str):
                        continue
                    if row.get("strict") is False:
                        continue  # lighteval grades strictly
                    expected = row.get("expected", row.get("result"))
                    yield {"source": f"{name}::{fname}", "gold": row["gold"], "completion": row["pred"],
                           "suite_expected": bool(expected) if expected is not None else None}


def lighteval_cases(path):
    import ast

    tree = ast.parse(open(path).read())
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test_"):
            continue
        body = ast.unparse(fn)
        letters = "NativeLetters" in body
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("parametrize")):
                continue
            argnames = [a.strip() for a in ast.literal_eval(dec.args[0]).split(",")]
            if "gold" not in argnames or "pred" not in argnames:
                continue
            for elt in dec.args[1].elts:
                try:
                    values = ast.literal_eval(elt)
                except ValueError:
                    # A Language.X member: only English cases are kept.
                    src = ast.unparse(elt)
                    if "Language.ENGLISH" not in src:
                        continue
                    values = ast.literal_eval(src.replace("Language.ENGLISH", "'en'"))
                row = dict(zip(argnames, values))
                if not isinstance(row["gold"], str) or not isinstance(row["pred"], str):
                    continue
                yield {"source": f"lighteval::{fn.name}", "gold": row["gold"], "completion": row["pred"],
                       "suite_expected": bool(row.get("expected")), "letters": letters}


def main():
    tests_dir, eval_dir, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = set()
    suite = []
    extra = list(lighteval_cases(sys.argv[4])) if len(sys.argv) > 4 else []
    for c in extra:
        if not c.pop("letters"):
            continue
        key = (c["gold"], c["completion"])
        if key in seen:
            continue
        seen.add(key)
        c["config"] = "letters"
        c["label"] = c["suite_expected"]
        c["gold_parsed"], c["pred_parsed"] = [], []
        suite.append(c)
    extra_math = [c for c in lighteval_cases(sys.argv[4])] if len(sys.argv) > 4 else []
    for c in list(suite_cases(tests_dir)) + [c for c in extra_math if not c.pop("letters")]:
        key = (c["gold"], c["completion"])
        if key in seen:
            continue
        seen.add(key)
        c["config"] = "suite"
        c["label"], c["gold_parsed"], c["pred_parsed"] = label("suite", c["gold"], c["completion"])
        suite.append(c)
    with open(os.path.join(out_dir, "mathverify_suite.jsonl"), "w") as f:
        for c in suite:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"suite: {len(suite)} cases, {sum(c['label'] for c in suite)} labelled equal")

    real = []
    for bench in ["math500", "minerva"]:
        with open(os.path.join(eval_dir, f"{bench}.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for r in rows:
            sol, ans = r["meta"]["solution"], r["answer"]
            # The solution as a completion, graded against the answer column (as lighteval's
            # answer-column tasks do: expression extraction of the gold).
            c = {"source": f"{bench}:{r['id']}:solution-vs-answer", "config": "answer", "gold": ans, "completion": sol}
            c["label"], c["gold_parsed"], c["pred_parsed"] = label("answer", ans, sol)
            real.append(c)
            # The paper's configuration: the solution is the gold; the answer column, boxed as a
            # model writes it, is the completion.
            pred = f"Therefore, the final answer is: $\\boxed{{{ans}}}$. I hope it is correct."
            c = {"source": f"{bench}:{r['id']}:answer-vs-solution", "config": "solution", "gold": sol, "completion": pred}
            c["label"], c["gold_parsed"], c["pred_parsed"] = label("solution", sol, pred)
            real.append(c)
    with open(os.path.join(out_dir, "real_solutions.jsonl"), "w") as f:
        for c in real:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"real: {len(real)} cases, {sum(c['label'] for c in real)} labelled equal")


if __name__ == "__main__":
    main()
