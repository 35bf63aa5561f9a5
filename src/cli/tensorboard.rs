//! `resa tensorboard RUN_DIR LOGDIR`: every `metrics.jsonl` under a run folder (Stage I,
//! Stage II, SFT, LoRA-GRPO) as TensorBoard event files, one TensorBoard run per stage;
//! `--follow` keeps mirroring new steps until interrupted, for a run that is still going.

use std::path::PathBuf;
use std::time::Duration;

use resa::pipeline::tensorboard::Mirror;

/// Arguments of `resa tensorboard`.
#[derive(Debug, clap::Args)]
pub struct TensorboardArgs {
    /// A run folder (a `resa tune` run, a demo, a toy paper, `runs/NAME`, …).
    pub run_dir: PathBuf,
    /// The TensorBoard log folder to write (`tensorboard --logdir LOGDIR`).
    pub logdir: PathBuf,
    /// Keep mirroring new steps every two seconds until interrupted.
    #[arg(long)]
    pub follow: bool,
}

/// Runs the command.
pub fn run(args: TensorboardArgs) -> anyhow::Result<()> {
    if !args.run_dir.is_dir() {
        anyhow::bail!("{}: not a folder", args.run_dir.display());
    }
    let found = resa::pipeline::curves::metrics_files(&args.run_dir)?;
    if found.is_empty() && !args.follow {
        anyhow::bail!("{}: no metrics.jsonl under it (nothing has trained there yet)", args.run_dir.display());
    }
    let mut mirror = Mirror::new(&args.run_dir, &args.logdir);
    let written = mirror.sync()?;
    eprintln!("{written} scalars from {} metrics files into {}", found.len(), args.logdir.display());
    if args.follow {
        eprintln!("following {} (Ctrl-C to stop)", args.run_dir.display());
        loop {
            std::thread::sleep(Duration::from_secs(2));
            mirror.sync()?;
        }
    }
    Ok(())
}
