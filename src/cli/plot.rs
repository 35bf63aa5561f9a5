//! `resa plot RUN_DIR`: the training curves of every run under a folder — each
//! `metrics.jsonl` (Stage I, Stage II, SFT, LoRA-GRPO) drawn as `curves.svg` and
//! `curves.png` beside it; also while the run is going.

use std::path::PathBuf;

/// Arguments of `resa plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A run folder (a `resa tune` run, a demo, a toy paper, `runs/NAME`, …).
    pub run_dir: PathBuf,
}

/// Runs the command.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    if !args.run_dir.is_dir() {
        anyhow::bail!("{}: not a folder", args.run_dir.display());
    }
    draw(&args)
}

#[cfg(feature = "plot")]
fn draw(args: &PlotArgs) -> anyhow::Result<()> {
    let found = resa::pipeline::curves::metrics_files(&args.run_dir)?;
    if found.is_empty() {
        anyhow::bail!("{}: no metrics.jsonl under it (nothing has trained there yet)", args.run_dir.display());
    }
    let figures = resa::pipeline::curves::plot_run(&args.run_dir)?;
    for f in &figures {
        println!("{}", args.run_dir.join(f).display());
    }
    eprintln!("{} figures (SVG, and PNG beside each) from {} metrics files", figures.len(), found.len());
    Ok(())
}

#[cfg(not(feature = "plot"))]
fn draw(_args: &PlotArgs) -> anyhow::Result<()> {
    anyhow::bail!("this resa was built without the `plot` feature; rebuild with it to draw figures")
}
