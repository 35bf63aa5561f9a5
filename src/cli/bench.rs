//! `resa bench`: the fixed workloads of `resa::bench` (what `cargo xtask bench` runs).

use burn::tensor::backend::Backend;
use resa::bench::{BenchResult, run_benches};
use resa::device::DeviceSpec;
use resa::with_backend;

/// Arguments of `resa bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Only these workloads (prefill, stage2_step, sae_step, decode_b1, decode_b8).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Timed runs per workload (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cpu, ndarray, wgpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Runs the command.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let spec = args.device;
    if !args.json {
        println!("device {spec}, {} threads available", std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!("| workload | tokens | median s | tokens/s | peak RSS MiB |\n|---|---:|---:|---:|---:|");
    }
    let json = args.json;
    let mut print = |r: &BenchResult| {
        if json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            println!(
                "| {} | {} | {:.3} | {:.1} | {} |",
                r.name,
                r.tokens,
                r.median_seconds,
                r.tokens_per_second,
                r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
            );
        }
    };
    with_backend!(spec, |B, device| { bench::<B>(&device, &args, &mut print) })
}

fn bench<B: Backend>(device: &B::Device, args: &BenchArgs, print: &mut dyn FnMut(&BenchResult)) -> anyhow::Result<()> {
    run_benches::<B>(device, &args.only, args.repeats, print)?;
    Ok(())
}
