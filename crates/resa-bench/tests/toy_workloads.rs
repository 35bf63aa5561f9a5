//! The small-model workloads run and report what they say: `toy_train_step` (tokens of a
//! 16 × 128 step), `grpo_step` (64 completions), `toy_eval` (64 problems × 4 samples), each
//! with one timed run after the warm-up and the cores it kept busy; an unknown workload is
//! refused.

use burn::backend::Flex;
use burn::tensor::DType;
use resa_bench::{BenchOptions, BenchSize, run_benches};

#[test]
fn the_toy_workloads_run() {
    let opts = BenchOptions {
        only: vec!["toy_train_step".into(), "grpo_step".into(), "toy_eval".into()],
        repeats: 1,
        size: BenchSize::Cpu,
        dtype: DType::F32,
    };
    let mut seen = Vec::new();
    let results = run_benches::<Flex>(&Default::default(), &opts, &mut |r| seen.push(r.name.clone())).expect("runs");
    assert_eq!(seen, ["toy_train_step", "grpo_step", "toy_eval"]);
    let tokens: Vec<usize> = results.iter().map(|r| r.tokens).collect();
    assert_eq!(tokens, [16 * 128, 64, 256]);
    // The process's CPU time over the timed runs' wall time: above zero, and at most every
    // core the whole time (this binary runs this one test).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for r in &results {
        assert_eq!(r.seconds.len(), 1, "{}", r.name);
        assert!(r.median_seconds > 0.0 && r.tokens_per_second.is_finite(), "{r:?}");
        let busy = r.cores_busy.unwrap_or_else(|| panic!("{}: no CPU clock", r.name));
        assert!(busy > 0.0 && busy <= cores * 1.05, "{}: {busy} cores busy of {cores}", r.name);
    }
    assert!(results[0].tflops_per_second > 0.0, "the training step counts its FLOPs");
    let bad = BenchOptions { only: vec!["toy_step".into()], ..opts };
    let e = run_benches::<Flex>(&Default::default(), &bad, &mut |_| {}).expect_err("unknown");
    assert!(e.to_string().contains("unknown workload `toy_step`"), "{e}");
}
