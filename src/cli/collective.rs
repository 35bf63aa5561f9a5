//! `resa collective-orchestrator --port P`: burn-collective's global orchestrator, which the
//! nodes of a multi-node Stage II run (`resa tune … --nodes N --node-rank R --orchestrator
//! ws://HOST:P --node-address ws://THIS_HOST:Q`) meet through. When it is ready it prints one
//! line to stdout, `resa collective-orchestrator: listening on ws://0.0.0.0:P`, and serves
//! until Ctrl-C or SIGTERM.

use std::io::Write;

use anyhow::Context;

/// Arguments of `resa collective-orchestrator`.
#[derive(Debug, clap::Args)]
pub struct OrchestratorArgs {
    /// Port to listen on (all interfaces).
    #[arg(long, default_value_t = 7600, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
}

/// Runs the command.
pub fn run(args: OrchestratorArgs) -> anyhow::Result<()> {
    // burn-collective only logs a failed bind; check the port here so that the error is ours.
    drop(
        std::net::TcpListener::bind(("0.0.0.0", args.port))
            .with_context(|| format!("cannot listen on port {} (in use?)", args.port))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the orchestrator's runtime")?;
    runtime.block_on(async {
        let server = tokio::spawn(burn_collective::start_global_orchestrator(args.port));
        // Ready once the port answers.
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", args.port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut out = std::io::stdout();
        let _ = writeln!(out, "resa collective-orchestrator: listening on ws://0.0.0.0:{}", args.port);
        let _ = out.flush();
        server.await.context("the orchestrator stopped")
    })
}
