#![doc = include_str!("../README.md")]

pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
#[cfg(feature = "http")]
pub mod openai;
#[cfg(feature = "http")]
pub mod remote;
pub mod report;
pub mod runner;
pub mod task;
#[cfg(feature = "http")]
pub mod vllm;

pub use bench::{MATH_BENCHMARKS, Problem, benchmark_file, load_problems};
pub use config::EvalConfig;
pub use engine::{Completion, Engine, Finish, LocalEngine, Request, completion_of, stop_token_ids};
pub use error::{Error, Result};
#[cfg(feature = "http")]
pub use openai::{OpenAiConfig, OpenAiEngine, PromptFormat, ServedModel};
#[cfg(feature = "http")]
pub use remote::RemoteEvaluation;
pub use report::{BenchScore, Report, bench_columns, compare_markdown};
pub use resa_grade::{
    Explained, Extracted, Graded, GradingConfig, Target, extract, extract_choice, grade, grade_choice, grade_explained,
    grade_math, math, normalize, verify,
};
pub use runner::{
    CompletionRecord, EvalFiles, Progress, evaluate, evaluate_with, prompt_text, read_completions, sample_seed, score,
};
pub use task::{EvalItem, Grader, TASKS, Task, TaskSources, TaskSpec, load_gpqa, load_task, task_spec};
#[cfg(feature = "http")]
pub use vllm::{EngineKind, EngineOptions, VllmOptions, VllmServer, vllm_command};
