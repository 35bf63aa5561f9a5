//! The `resa` command-line program. Each subcommand lives in its own module under `cli/`.

mod cli;

use clap::Parser;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // Warnings, and what a user must know of a run: where it resumed from, what a killed run
    // left and was removed (`--quiet`: warnings only; `RESA_LOG` overrides both).
    let default = if args.quiet {
        "warn"
    } else {
        "warn,resa_tune::train=info,resa_sae::stage1=info,resa_qwen2::safetensors_io=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RESA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
