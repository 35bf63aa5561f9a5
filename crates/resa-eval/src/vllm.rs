//! The vLLM server manager, and which engine decodes an evaluation: this project's generator
//! (`local`), vLLM started here as a child process (`vllm`), or a server the user already
//! runs (`endpoint`). The prompts, seeds, resumable completions, grading and reports are the
//! runner's in every case ([`crate::evaluate_with`]); vLLM and any other server are reached
//! through [`crate::OpenAiEngine`].
//!
//! With `vllm`, each evaluation stage starts `vllm serve` on the base model with every
//! adapter it needs as a LoRA module (`--enable-lora --lora-modules NAME=DIR`: the Stage II
//! adapter, each checkpoint of a checkpoint sweep, or the adapter of a model reference such as
//! Tina), waits until `/v1/models` answers, runs every benchmark through the OpenAI client,
//! and stops it. The exact command is logged and written beside the completions
//! (`vllm-command.txt`), with vLLM's output in `vllm.log`. [`vllm_command`] builds it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::OpenAiConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The engine of an experiment's evaluations (`[eval] engine`, `--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// This project's generator.
    #[default]
    Local,
    /// `vllm serve` started for each evaluation stage.
    Vllm,
    /// An OpenAI-compatible server the user runs (`--endpoint`).
    Endpoint,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Local => "local",
            EngineKind::Vllm => "vllm",
            EngineKind::Endpoint => "endpoint",
        })
    }
}

/// How vLLM is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VllmOptions {
    /// The `vllm` program (a name looked up on `PATH`, or a path).
    pub program: PathBuf,
    /// Address it listens on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// `--dtype` (the paper's models are bf16).
    pub dtype: String,
    /// `--max-model-len`; default the token budget plus [`PROMPT_ROOM`].
    pub max_model_len: Option<usize>,
    /// More arguments, appended as given (`--tensor-parallel-size 2`,
    /// `--data-parallel-size 4`, `--gpu-memory-utilization 0.9`, …).
    pub extra_args: Vec<String>,
    /// Seconds to wait for the server to answer `/v1/models` (it loads weights and
    /// compiles graphs first).
    pub startup_timeout_s: f64,
}

/// Tokens of prompt room in the default `--max-model-len` (the benchmarks' prompts are
/// under 1,000 tokens with the chat template).
pub const PROMPT_ROOM: usize = 4096;

/// vLLM's accepted `--max-lora-rank` values.
const LORA_RANKS: [usize; 9] = [1, 8, 16, 32, 64, 128, 256, 320, 512];

impl Default for VllmOptions {
    fn default() -> Self {
        VllmOptions {
            program: PathBuf::from("vllm"),
            host: "127.0.0.1".into(),
            port: 0,
            dtype: "bfloat16".into(),
            max_model_len: None,
            extra_args: Vec::new(),
            startup_timeout_s: 1800.0,
        }
    }
}

/// Settings of the engines.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineOptions {
    /// Which engine; `None`: each experiment's `[eval] engine`.
    pub kind: Option<EngineKind>,
    /// vLLM's start.
    pub vllm: VllmOptions,
    /// The client (endpoint, concurrency, timeouts, retries); with `vllm` its endpoint is
    /// the started server's.
    pub client: OpenAiConfig,
}

/// The name the base model is served under by [`vllm_command`].
pub const BASE_NAME: &str = "base";

/// The `vllm serve` command line (program first) for `model_dir` with `lora_modules`
/// (name, PEFT folder) of rank at most `max_lora_rank`.
pub fn vllm_command(
    opts: &VllmOptions,
    model_dir: &Path,
    port: u16,
    max_model_len: usize,
    lora_modules: &[(String, PathBuf)],
    max_lora_rank: usize,
) -> Vec<String> {
    let mut cmd: Vec<String> = vec![
        opts.program.display().to_string(),
        "serve".into(),
        model_dir.display().to_string(),
        "--host".into(),
        opts.host.clone(),
        "--port".into(),
        port.to_string(),
        "--served-model-name".into(),
        BASE_NAME.into(),
        "--dtype".into(),
        opts.dtype.clone(),
        "--max-model-len".into(),
        max_model_len.to_string(),
        // Sampling comes from each request only, not from the model's generation_config.json.
        "--generation-config".into(),
        "vllm".into(),
        "--seed".into(),
        "0".into(),
    ];
    if !lora_modules.is_empty() {
        let rank = LORA_RANKS.iter().copied().find(|&r| r >= max_lora_rank).unwrap_or(max_lora_rank);
        cmd.extend([
            "--enable-lora".into(),
            "--max-lora-rank".into(),
            rank.to_string(),
            "--max-loras".into(),
            lora_modules.len().min(8).to_string(),
            "--lora-modules".into(),
        ]);
        cmd.extend(lora_modules.iter().map(|(name, dir)| format!("{name}={}", dir.display())));
    }
    cmd.extend(opts.extra_args.iter().cloned());
    cmd
}

/// Checks that `program` can be run (found on `PATH`, or an existing file), before any stage.
pub fn check_program(program: &Path) -> Result<()> {
    let found = if program.components().count() > 1 {
        program.is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(Error::EngineStart {
            engine: "vllm",
            message: format!("`{}` is not on PATH (pip install vllm, or give its path with --vllm)", program.display()),
        })
    }
}

/// A `vllm serve` child process; stopped (SIGTERM to its process group, then SIGKILL after
/// 30 s) when dropped.
pub struct VllmServer {
    child: Child,
    /// The base URL with `/v1`.
    pub endpoint: String,
    /// The command it runs.
    pub command: Vec<String>,
    log: PathBuf,
}

impl VllmServer {
    /// Starts `command` (from [`vllm_command`]; its `--port` must be `port`) with its output
    /// in `log`, and waits until `GET /v1/models` answers.
    pub fn start(command: Vec<String>, host: &str, port: u16, log: &Path, timeout: Duration) -> Result<VllmServer> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|cause| Error::Io { path: dir.to_path_buf(), cause })?;
        }
        let io = |cause| Error::Io { path: log.to_path_buf(), cause };
        let out = std::fs::File::create(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..]).stdin(Stdio::null()).stdout(out).stderr(err);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| Error::EngineStart {
            engine: "vllm",
            message: format!("cannot start `{}`: {e}", command.join(" ")),
        })?;
        let mut server =
            VllmServer { child, endpoint: format!("http://{host}:{port}/v1"), command, log: log.to_path_buf() };
        server.wait_ready(timeout)?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        let url = format!("{}/models", self.endpoint);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::EngineStart {
                    engine: "vllm",
                    message: format!(
                        "vLLM exited ({status}) before it was ready; the command was `{}`; the end of {}:\n{}",
                        self.command.join(" "),
                        self.log.display(),
                        tail(&self.log, 30)
                    ),
                });
            }
            if agent.get(&url).call().is_ok() {
                tracing::info!("vLLM ready at {} after {:.0} s", self.endpoint, started.elapsed().as_secs_f64());
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Error::EngineStart {
                    engine: "vllm",
                    message: format!(
                        "vLLM did not answer {url} within {:.0} s; the command was `{}`; the end of {}:\n{}",
                        timeout.as_secs_f64(),
                        self.command.join(" "),
                        self.log.display(),
                        tail(&self.log, 30)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        #[cfg(unix)]
        {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for VllmServer {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The last `n` lines of a file (for an error message).
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free loopback port (bound and released; vLLM binds it right after).
pub fn free_port(host: &str) -> Result<u16> {
    let refused =
        |e: std::io::Error| Error::EngineStart { engine: "vllm", message: format!("no free port on {host}: {e}") };
    let listener = std::net::TcpListener::bind((host, 0)).map_err(refused)?;
    listener.local_addr().map(|a| a.port()).map_err(refused)
}
