//! The datasets the paper trains on, by the names the paper and the reference code use.

/// One dataset of the paper: where it lives on the hub and how its rows map to
/// problem and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetEntry {
    /// Canonical short name (`still`, `deepscaler`, ...).
    pub name: &'static str,
    /// Other names it goes by (the reference code's `curated_*` keys, the paper's spelling).
    pub aliases: &'static [&'static str],
    /// Hugging Face hub dataset id.
    pub hub_id: &'static str,
    /// Problem key, when not found by the default fallbacks (`problem`, `question`, `prompt`).
    pub problem_key: Option<&'static str>,
    /// Answer key.
    pub answer_key: &'static str,
    /// Approximate rows of the train split, as the reference code notes them.
    pub approx_rows: usize,
}

/// The paper's datasets (Resa's `RL_POST_TRAIN_DATASET_MAP`).
pub const REGISTRY: &[DatasetEntry] = &[
    DatasetEntry {
        name: "still",
        aliases: &["curated_still", "STILL", "STILL-3"],
        hub_id: "RUC-AIBOX/STILL-3-Preview-RL-Data",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 33_000,
    },
    DatasetEntry {
        name: "deepscaler",
        aliases: &["curated_deepscaler", "DeepScaleR"],
        hub_id: "agentica-org/DeepScaleR-Preview-Dataset",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 40_300,
    },
    DatasetEntry {
        name: "open-s1",
        aliases: &["curated_open_rs1", "Open-S1", "open_s1"],
        hub_id: "knoveleng/open-s1",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 18_600,
    },
    DatasetEntry {
        name: "open-rs",
        aliases: &["curated_open_rs2", "curated_open_rs3", "Open-RS", "open_rs"],
        hub_id: "knoveleng/open-rs",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 7_000,
    },
    DatasetEntry {
        name: "ii-thought",
        aliases: &["curated_2thought", "II-Thought", "ii_thought"],
        hub_id: "Intelligent-Internet/II-Thought-RL-v0-Math-50K",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 53_300,
    },
    DatasetEntry {
        name: "openr1-math",
        aliases: &["curated_open_r1", "OpenR1-Math", "openr1_math"],
        hub_id: "open-r1/OpenR1-Math-220k",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 93_700,
    },
    DatasetEntry {
        name: "limr",
        aliases: &["curated_limr", "LIMR"],
        hub_id: "GAIR/LIMR",
        problem_key: None,
        answer_key: "answer",
        approx_rows: 1_390,
    },
];

/// Looks a dataset up by name or alias (case-insensitive; `-` and `_` are equivalent).
pub fn lookup(name: &str) -> Option<&'static DatasetEntry> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let want = norm(name);
    REGISTRY.iter().find(|e| norm(e.name) == want || e.aliases.iter().any(|a| norm(a) == want))
}

/// The registry's canonical names, comma-separated (for messages).
pub fn names() -> String {
    REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}
