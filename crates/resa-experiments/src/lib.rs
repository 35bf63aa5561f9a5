#![doc = include_str!("../README.md")]

pub mod budget;
pub mod error;
pub mod experiment;
pub mod plan;
pub mod report;
pub mod run;

pub use budget::{Budget, PAPER_EVAL_PROBLEMS, PAPER_STAGE2_GPU_SECONDS_PER_STEP, describe, estimate};
pub use error::{Error, Result};
pub use experiment::{
    EvalSection, Experiment, PAPER_LAYERS, PAPER_TASKS, Sweep, list, list_json, load_experiments, results_table,
};
pub use plan::{Step, TinyAssets, checkpoints, plan};
pub use report::ResultRow;
pub use run::{RunEvent, RunOptions, check_engine, check_memory, run, shell_line};
