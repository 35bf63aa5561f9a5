//! `resa bench`: the fixed workloads of `resa::bench` (what `cargo xtask bench` runs).

use burn::tensor::backend::Backend;
use resa::bench::{BenchOptions, BenchResult, BenchSize, run_benches};
use resa::device::ComputeArgs;
use resa::with_backend;

/// Arguments of `resa bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Only these workloads (gemm, prefill, stage2_step, stage2_step_plain, stage2_step_recompute, sae_step,
    /// stage2_step_vocab, stage2_step_vocab_full, decode_b1, decode_b8, serve_c1, serve_c8,
    /// toy_train_step, grpo_step, toy_eval).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Timed runs per workload (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Shapes: `cpu` (the default workloads) or `1.5b` (R1-Distill-Qwen-1.5B, for a GPU).
    #[arg(long, default_value = "cpu")]
    pub size: BenchSize,
    /// The device's peak rate in TFLOP/s for the dtype (e.g. 989 for an H100 SXM in bf16);
    /// adds a model-FLOPs-utilisation column.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    if !args.json {
        println!(
            "device {spec}, {:?}, {:?} shapes, {} threads available",
            args.compute.dtype,
            args.size,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "| workload | tokens | median s | tokens/s | TFLOP/s | MFU | cores busy | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    let (json, peak) = (args.json, args.peak_tflops);
    let mut print = |r: &BenchResult| {
        if json {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let (Some(p), Some(o)) = (peak, v.as_object_mut()) {
                o.insert("mfu".into(), (r.tflops_per_second / p).into());
            }
            println!("{v}");
        } else {
            println!(
                "| {} | {} | {:.3} | {:.1} | {:.3} | {} | {} | {} |",
                r.name,
                r.tokens,
                r.median_seconds,
                r.tokens_per_second,
                r.tflops_per_second,
                peak.map_or("-".into(), |p| format!("{:.1}%", 100.0 * r.tflops_per_second / p)),
                r.cores_busy.map_or("-".into(), |c| format!("{c:.2}")),
                r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
            );
        }
    };
    let opts =
        BenchOptions { only: args.only.clone(), repeats: args.repeats, size: args.size, dtype: args.compute.dtype };
    with_backend!(spec, |B, device| { bench::<B>(&device, &opts, &mut print) })
}

fn bench<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    print: &mut dyn FnMut(&BenchResult),
) -> anyhow::Result<()> {
    run_benches::<B>(device, opts, print)?;
    Ok(())
}
