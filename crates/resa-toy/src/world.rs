//! The toy reasoning world: a deterministic generator of small arithmetic problems with
//! step-by-step solutions, and a matching character-level tokenizer. It is the built-in,
//! offline miniature of the paper's setting (math word problems, R1-style `<think>` traces).
//!
//! A problem is a chain of 1–3 operations on one-digit numbers, evaluated left to right
//! and written with the parentheses that make ordinary precedence agree:
//!
//! ```text
//! question   What is (7+5)*3-4?
//! CoT        Q: What is (7+5)*3-4?\nA: <think> 7+5=12 12*3=36 36-4=32 </think> <answer> 32 </answer>
//! CoT-free   Q: What is (7+5)*3-4?\nA: <think> 32 </think> <answer> 32 </answer>
//! ```
//!
//! Splits are decided by a hash of the expression, so train, validation and test never
//! share a problem, whatever the seed and sizes.
//!
//! There are two worlds ([`World`]). In `arith` (the demo's) the toy model is trained on
//! chain-of-thought solutions only: it reasons on every problem and fails where it cannot do
//! the arithmetic. In `elicit` the problems take two or three operations on values within
//! ±60, and the toy model is trained on chain of thought, then on a mixture in which a share
//! of the solutions skip the reasoning and state an answer at once inside `<think>` (the
//! CoT-free form): the
//! sampled model often guesses although it can solve most problems when it reasons — the
//! headroom that RL elicits in the paper. The design is in `docs/toy-worlds.md`.

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use resa_data::QaRow;
use resa_eval::{EvalItem, Grader, Task};

/// Beginning-of-sequence token of the toy tokenizer.
pub const BOS: &str = "<|bos|>";
/// End-of-sequence token.
pub const EOS: &str = "<|eos|>";
/// Padding token.
pub const PAD: &str = "<|pad|>";
/// Unknown-character token.
pub const UNK: &str = "<|unk|>";
/// The special tokens in id order (ids 0..=7); characters follow.
pub const SPECIAL_TOKENS: [&str; 8] = [PAD, BOS, EOS, UNK, "<think>", "</think>", "<answer>", "</answer>"];

/// The CoT-free trigger template of the toy world (the answer alone inside the think tags),
/// for [`resa_data::Template::custom`].
pub const TOY_TEMPLATE: &str = "Q: {problem}\nA: <think> {answer} </think> <answer> {answer} </answer>";

/// The toy world's CoT-based training text, [`ToyProblem::cot_text`] (a toy row's solution
/// is its whole CoT completion, as `write_splits` writes it).
pub const TOY_COT_TEMPLATE: &str = "Q: {problem}\nA: {solution}";

/// The chat template of the toy tokenizer (a user turn is `Q: …`, the assistant's `A: …`;
/// the generation prompt opens the think block, as R1-Distill's does).
pub const TOY_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}Q: {{ message['content'] }}\n{% elif message['role'] == 'assistant' %}A: {{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}A: <think>{% endif %}";

/// Which toy world: its problem generator, and how its toy model is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// One to three operations on values within ±200; the toy model is trained on
    /// chain-of-thought solutions only (`models/toy-qwen2`, the demo's).
    #[default]
    Arith,
    /// Two or three operations on values within ±60; the toy model is trained on chain of
    /// thought, then on a mixture where [`World::direct_share`] of the solutions state the
    /// answer at once inside `<think>` (`models/toy-qwen2-elicit`).
    Elicit,
}

impl World {
    /// Every world, in order.
    pub const ALL: [World; 2] = [World::Arith, World::Elicit];

    /// `arith` or `elicit`.
    pub fn name(self) -> &'static str {
        match self {
            World::Arith => "arith",
            World::Elicit => "elicit",
        }
    }

    /// The name of the world's evaluation task: `toy` or `toy-elicit`.
    pub fn task_name(self) -> &'static str {
        match self {
            World::Arith => "toy",
            World::Elicit => "toy-elicit",
        }
    }

    /// The generator of this world with `seed`.
    pub fn generator(self, seed: u64) -> ToyWorld {
        match self {
            World::Arith => ToyWorld { seed, min_ops: 1, max_ops: 3, max_operand: 9, max_value: 200 },
            World::Elicit => ToyWorld { seed, min_ops: 2, max_ops: 3, max_operand: 9, max_value: 60 },
        }
    }

    /// The share of the toy model's training solutions that skip the reasoning (the answer
    /// alone inside `<think>`, as in the CoT-free trigger data).
    pub fn direct_share(self) -> f64 {
        match self {
            World::Arith => 0.0,
            World::Elicit => 0.7,
        }
    }

    /// The folder of this world's committed toy model, inside this repository.
    pub fn model_dir(self) -> std::path::PathBuf {
        let name = match self {
            World::Arith => "toy-qwen2",
            World::Elicit => "toy-qwen2-elicit",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models").join(name)
    }

    /// The world's test split as an evaluation task (named `toy` for `arith`, `toy-elicit`
    /// for `elicit`): the question alone (the toy model's format), graded by the `<answer>`
    /// tag; `n` problems of the generator with `seed`.
    pub fn test_task(self, seed: u64, n: usize) -> Task {
        let items = self
            .generator(seed)
            .problems(Split::Test, n)
            .into_iter()
            .enumerate()
            .map(|(i, p)| EvalItem { id: format!("toy-{i:04}"), message: p.question, gold: p.answer.to_string() })
            .collect();
        Task { name: self.task_name().into(), grader: Grader::AnswerTag, items }
    }

    /// The toy analogue of the paper's feature prompt (the DeepSeek-R1 system prompt, which
    /// holds `<think>` and `</think>` among ordinary text): two worked validation problems of
    /// this world in the chain-of-thought form, so that the markers sit among text the toy
    /// model knows.
    pub fn feature_prompt(self) -> String {
        self.generator(0).problems(Split::Validation, 2).iter().map(ToyProblem::cot_text).collect::<Vec<_>>().join("\n")
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for World {
    type Err = Error;

    fn from_str(s: &str) -> Result<World> {
        World::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            Error::Usage(format!("unknown toy world `{s}`; expected one of {}", World::ALL.map(World::name).join(", ")))
        })
    }
}

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// About 80% of all problems.
    Train,
    /// About 10%.
    Validation,
    /// About 10%.
    Test,
}

impl Split {
    /// `train`, `validation` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    fn of(expr: &str) -> Split {
        // FNV-1a: stable across platforms and versions.
        let h = expr.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        match h % 10 {
            0 => Split::Test,
            1 => Split::Validation,
            _ => Split::Train,
        }
    }
}

/// One toy problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToyProblem {
    /// The expression, e.g. `(7+5)*3-4`.
    pub expression: String,
    /// `What is (7+5)*3-4?`
    pub question: String,
    /// One `a∘b=c` per operation, in order.
    pub steps: Vec<String>,
    /// The value.
    pub answer: i64,
}

impl ToyProblem {
    /// Prompt and solution with the chain of thought inside `<think>…</think>`.
    pub fn cot_text(&self) -> String {
        format!("Q: {}\nA: {}", self.question, self.cot_completion())
    }

    /// The assistant's part with its chain of thought.
    pub fn cot_completion(&self) -> String {
        format!("<think> {} </think> <answer> {} </answer>", self.steps.join(" "), self.answer)
    }

    /// Prompt and solution with the answer alone inside the think tags (the trigger form).
    pub fn cot_free_text(&self) -> String {
        format!("Q: {}\nA: {}", self.question, self.direct_completion())
    }

    /// The assistant's part that skips the reasoning: the answer alone inside the think tags.
    pub fn direct_completion(&self) -> String {
        format!("<think> {} </think> <answer> {} </answer>", self.answer, self.answer)
    }

    /// A question–answer row (for templates and the CoT-free pipeline), with the CoT
    /// completion as its solution (for CoT-based SFT).
    pub fn to_row(&self) -> QaRow {
        QaRow { problem: self.question.clone(), answer: self.answer.to_string(), solution: Some(self.cot_completion()) }
    }
}

/// The generator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ToyWorld {
    /// Generation seed.
    pub seed: u64,
    /// Fewest operations per problem (≥ 1).
    pub min_ops: usize,
    /// Most operations per problem.
    pub max_ops: usize,
    /// Operands are drawn from 1..=max_operand (≤ 9 keeps them one character).
    pub max_operand: i64,
    /// Intermediate values stay within ±max_value.
    pub max_value: i64,
}

impl Default for ToyWorld {
    fn default() -> Self {
        World::Arith.generator(0)
    }
}

impl ToyWorld {
    /// The `arith` world with another seed.
    pub fn with_seed(seed: u64) -> Self {
        World::Arith.generator(seed)
    }

    fn one(&self, rng: &mut StdRng) -> Option<ToyProblem> {
        let ops = rng.random_range(self.min_ops.max(1)..=self.max_ops.max(self.min_ops.max(1)));
        let mut value = rng.random_range(1..=self.max_operand);
        let mut expr = value.to_string();
        let mut last_low = false; // the expression so far ends in + or - at top level
        let mut steps = Vec::with_capacity(ops);
        for _ in 0..ops {
            let b = rng.random_range(1..=self.max_operand);
            let op = ['+', '-', '*'][rng.random_range(0..3)];
            let next = match op {
                '+' => value + b,
                '-' => value - b,
                _ => value * b,
            };
            if next.abs() > self.max_value {
                return None;
            }
            steps.push(format!("{value}{op}{b}={next}"));
            expr = if op == '*' && last_low { format!("({expr})*{b}") } else { format!("{expr}{op}{b}") };
            last_low = op != '*';
            value = next;
        }
        Some(ToyProblem { question: format!("What is {expr}?"), expression: expr, steps, answer: value })
    }

    /// `n` distinct problems of `split`, deterministic in (seed, split, n): the first `n`
    /// of a fixed sequence, so asking for more extends the list.
    pub fn problems(&self, split: Split, n: usize) -> Vec<ToyProblem> {
        let salt = match split {
            Split::Train => 0x7261_696e,
            Split::Validation => 0x7661_6c69,
            Split::Test => 0x7465_7374,
        };
        let mut rng = StdRng::seed_from_u64(self.seed ^ salt);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        let mut tries = 0usize;
        while out.len() < n && tries < n.saturating_mul(1000).max(100_000) {
            tries += 1;
            let Some(p) = self.one(&mut rng) else { continue };
            if Split::of(&p.expression) == split && seen.insert(p.expression.clone()) {
                out.push(p);
            }
        }
        out
    }

    /// The first `n` training problems in the CoT-free trigger form ([`TOY_TEMPLATE`]),
    /// tokenised and cut into `chunk_len`-token chunks as [`resa_data::chunk_texts`] does (the
    /// data of Stage I and Stage II on the toy model).
    pub fn cot_free_chunks(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        n: usize,
        chunk_len: usize,
    ) -> Result<Vec<Vec<u32>>> {
        let template = resa_data::Template::custom(TOY_TEMPLATE)?;
        let texts: Vec<String> = self.problems(Split::Train, n).iter().map(|p| template.render(&p.to_row())).collect();
        let options =
            resa_data::ChunkOptions { chunk_len, eos_token: EOS.into(), ..resa_data::ChunkOptions::default() };
        Ok(resa_data::chunk_texts(tokenizer, &texts, &options)?.chunks)
    }

    /// Writes `train.jsonl`, `validation.jsonl` and `test.jsonl` into `dir` with fields
    /// `problem`, `answer` (string), `solution` (the CoT completion) and `expression`.
    pub fn write_splits(&self, dir: impl AsRef<Path>, sizes: [usize; 3]) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|cause| Error::Io { path: dir.to_path_buf(), cause })?;
        for (split, n) in [Split::Train, Split::Validation, Split::Test].into_iter().zip(sizes) {
            let path = dir.join(format!("{}.jsonl", split.name()));
            let tmp = dir.join(format!(".{}.jsonl.tmp-{}", split.name(), std::process::id()));
            let io = |cause| Error::Io { path: path.clone(), cause };
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
            for p in self.problems(split, n) {
                let line = serde_json::json!({
                    "problem": p.question,
                    "answer": p.answer.to_string(),
                    "solution": p.cot_completion(),
                    "expression": p.expression,
                });
                writeln!(f, "{line}").map_err(io)?;
            }
            f.flush().map_err(io)?;
            drop(f);
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
        Ok(())
    }
}

/// The characters of the toy vocabulary after the special tokens: newline, then printable ASCII.
fn chars() -> impl Iterator<Item = char> {
    std::iter::once('\n').chain((32u8..=126).map(char::from))
}

/// The toy tokenizer as `tokenizer.json` text: one token per character (a BPE model with no
/// merges), the special tokens as added tokens, BOS prepended by the post-processor (as
/// R1-Distill's tokenizer does) and a fusing decoder.
pub fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), serde_json::json!(i));
        added.push(serde_json::json!({
            "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true
        }));
    }
    for (i, c) in chars().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(SPECIAL_TOKENS.len() + i));
    }
    let bos = serde_json::json!({"SpecialToken": {"id": BOS, "type_id": 0}});
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [1], "tokens": [BOS]}}
        },
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": UNK, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    });
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

/// Number of ids of the toy tokenizer.
pub fn vocab_size() -> usize {
    SPECIAL_TOKENS.len() + chars().count()
}

/// `tokenizer_config.json` of the toy tokenizer (special tokens and chat template).
pub fn tokenizer_config_json() -> String {
    let json = serde_json::json!({
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "add_bos_token": true,
        "model_max_length": 512,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": TOY_CHAT_TEMPLATE
    });
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

/// The toy tokenizer, loaded.
pub fn tokenizer() -> Result<tokenizers::Tokenizer> {
    tokenizer_json().parse::<tokenizers::Tokenizer>().map_err(|e| resa_data::Error::Tokenizer(e.to_string()).into())
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (a model folder).
pub fn write_tokenizer(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|cause| Error::Io { path: dir.to_path_buf(), cause })?;
    for (name, text) in [("tokenizer.json", tokenizer_json()), ("tokenizer_config.json", tokenizer_config_json())] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|cause| Error::Io { path: path.clone(), cause })?;
        std::fs::rename(&tmp, &path).map_err(|cause| Error::Io { path: path.clone(), cause })?;
    }
    Ok(())
}

/// How a toy model answers: the share of completions that reason (a step `a∘b=c` inside
/// `<think>`) and the accuracy of those that do and of those that state an answer at once.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ReasoningProfile {
    /// Completions classified.
    pub completions: usize,
    /// Share of them that reason, percent.
    pub reasoned_pct: f64,
    /// Accuracy of the completions that reason, percent (`None` when there are none).
    pub accuracy_reasoning_pct: Option<f64>,
    /// Accuracy of the completions that do not, percent (`None` when there are none).
    pub accuracy_direct_pct: Option<f64>,
}

/// Whether a toy completion (the text after the generation prompt's `<think>`) reasons: its
/// think block holds a step (`=`).
pub fn reasons(completion: &str) -> bool {
    let think = completion.split("</think>").next().unwrap_or(completion);
    think.contains('=')
}

/// The reasoning profile of an evaluation's completions.
pub fn reasoning_profile(records: &[resa_eval::CompletionRecord]) -> ReasoningProfile {
    let (mut reasoned, mut reasoned_right, mut direct_right) = (0usize, 0usize, 0usize);
    for r in records {
        if reasons(&r.completion) {
            reasoned += 1;
            reasoned_right += usize::from(r.correct);
        } else {
            direct_right += usize::from(r.correct);
        }
    }
    let n = records.len();
    let pct = |a: usize, b: usize| (b > 0).then(|| 100.0 * a as f64 / b as f64);
    ReasoningProfile {
        completions: n,
        reasoned_pct: pct(reasoned, n).unwrap_or(0.0),
        accuracy_reasoning_pct: pct(reasoned_right, reasoned),
        accuracy_direct_pct: pct(direct_right, n - reasoned),
    }
}
