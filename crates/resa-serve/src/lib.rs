//! An OpenAI-compatible HTTP server over the resa Qwen2 generator: serve a model, or a
//! model with a Resa PEFT adapter, without Python, to any OpenAI client (and to
//! `resa eval --engine openai`).
//!
//! Endpoints: `GET /v1/models`, `POST /v1/completions` (a prompt as text, token ids, or a
//! list of either), `POST /v1/chat/completions` (the model's chat template), `GET /health`.
//! Request fields follow OpenAI's and vLLM's: `model`, `prompt` / `messages`, `max_tokens`
//! (completions: 16 by default, as OpenAI; chat: the rest of the context), `temperature`
//! (1 by default; 0 is greedy), `top_p`, `top_k` (vLLM's; -1 or absent disables), `n`,
//! `seed`, `stop_token_ids` (added to the model's EOS ids), `skip_special_tokens` (true by
//! default) and `add_special_tokens` (completions: true by default, chat: false). Streaming,
//! `logprobs`, `echo` and `stop` strings are refused with HTTP 400 rather than ignored.
//!
//! With an API key ([`ServeOptions::api_key`], vLLM's `--api-key`), every route but
//! `/health` asks for `Authorization: Bearer KEY` (compared in constant time) and answers 401
//! otherwise. At most [`ServeOptions::max_queued`] sequences wait or decode at once; a request
//! that would exceed it is refused with 503 and an OpenAI-style error, before any work. A
//! client that goes away (closes its connection) ends its sequences at the next decode step.
//!
//! Requests are decoded with continuous batching ([`resa_qwen2::BatchDecoder`]): one thread
//! owns the model; a waiting sequence joins the batch between decode steps (up to
//! `max_batch`) and leaves it when it finishes, each with its own sampler and settings. A
//! request for another served adapter waits until the batch drains, then that adapter is
//! swapped in. A request's `seed` seeds its first choice exactly
//! (choice `i > 0` uses a seed derived from it), so `resa eval --engine openai` against this
//! server gives the completions a local `resa eval` gives with the same seeds.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use resa_qwen2::{Qwen2ForCausalLM, Tokenizer, burn::backend::Flex, burn::tensor::DType};
//! let dir = std::path::Path::new("/models/DeepSeek-R1-Distill-Qwen-1.5B");
//! let model = Qwen2ForCausalLM::<Flex>::from_pretrained(dir, &Default::default(), DType::F32)?;
//! let server = resa_serve::Server::start(model, Tokenizer::from_dir(dir)?, resa_serve::ServeOptions::default())?;
//! println!("listening on http://{}/v1", server.addr());
//! server.wait()?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use resa_qwen2::burn::tensor::backend::Backend;
use resa_qwen2::{
    BatchDecoder, ChatMessage, DecodeRequest, FinishReason, Generated, GenerationConfig, LowRank, Qwen2ForCausalLM,
    Sampling, Tokenizer,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub mod error;

pub use error::{Error, Result};

/// Settings of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on (vLLM's default: loopback only).
    pub host: String,
    /// Port (vLLM's default 8000; 0 picks a free one, see [`Server::addr`]).
    pub port: u16,
    /// The name `/v1/models` lists and requests must use.
    pub served_model_name: String,
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Context length (prompt + new tokens); default the model's `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    /// Most choices one request may ask for (`n` × prompts).
    pub max_choices: usize,
    /// A PEFT adapter folder attached to the model served as `served_model_name`.
    pub adapter: Option<PathBuf>,
    /// More adapters, each served under its own name on the same base model (vLLM's
    /// `--lora-modules NAME=DIR`); requests naming one are decoded with it attached.
    pub lora_modules: Vec<(String, PathBuf)>,
    /// The key every request but `/health` must carry as `Authorization: Bearer KEY`
    /// (vLLM's `--api-key`); none: no authentication.
    pub api_key: Option<String>,
    /// Sequences (choices) waiting or being decoded at most; a request that would exceed it
    /// is refused with 503 (400 when it alone asks for more).
    pub max_queued: usize,
}

impl ServeOptions {
    /// Checks the settings that do not depend on the model.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(Error::Config { field: "max_batch", message: "must be at least 1".into() });
        }
        if self.max_choices == 0 {
            return Err(Error::Config { field: "max_choices", message: "must be at least 1".into() });
        }
        if self.served_model_name.trim().is_empty() {
            return Err(Error::Config { field: "served_model_name", message: "must not be empty".into() });
        }
        if self.max_queued == 0 {
            return Err(Error::Config { field: "max_queued", message: "must be at least 1".into() });
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::Config {
                field: "api_key",
                message: "must be non-empty, without spaces or control characters".into(),
            });
        }
        Ok(())
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            served_model_name: "resa".into(),
            max_batch: 16,
            max_model_len: None,
            max_choices: 256,
            adapter: None,
            lora_modules: Vec::new(),
            api_key: None,
            max_queued: 1024,
        }
    }
}

/// What one sequence is decoded with; the served adapter decides which batch it may join.
#[derive(Debug, Clone, PartialEq)]
struct GenKey {
    /// Which served model (0: `served_model_name`, then the LoRA modules in order).
    served: usize,
    sampling: Sampling,
    max_new_tokens: usize,
    stop: Vec<u32>,
}

struct Job {
    ids: Vec<u32>,
    seed: u64,
    key: GenKey,
    reply: oneshot::Sender<std::result::Result<Generated, String>>,
}

struct Shared {
    /// The served names: the model, then each LoRA module.
    names: Vec<String>,
    /// The adapter folder of each served name (none for a bare base model).
    roots: Vec<Option<PathBuf>>,
    tokenizer: Tokenizer,
    vocab: usize,
    max_model_len: usize,
    eos: Vec<u32>,
    max_choices: usize,
    jobs: std_mpsc::Sender<Job>,
    created: u64,
    api_key: Option<String>,
    max_queued: usize,
    /// Sequences of requests in flight (waiting or decoding).
    pending: AtomicUsize,
    /// Sequences ended because their client went away.
    cancelled: Arc<AtomicU64>,
}

/// What a running server has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Sequences of requests in flight now (waiting or decoding).
    pub pending: usize,
    /// Sequences ended early because their client went away.
    pub cancelled: u64,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Binds `opts.host:opts.port` and serves `model` on background threads until
    /// [`Server::shutdown`] (or, for [`Server::wait`], Ctrl-C / SIGTERM).
    pub fn start<B: Backend>(
        mut model: Qwen2ForCausalLM<B>,
        tokenizer: Tokenizer,
        opts: ServeOptions,
    ) -> Result<Server> {
        opts.validate()?;
        let positions = model.config().max_position_embeddings;
        let max_model_len = opts.max_model_len.unwrap_or(positions);
        if max_model_len < 2 || max_model_len > positions {
            return Err(Error::Config {
                field: "max_model_len",
                message: format!("{max_model_len}: must be in 2 ..= {positions} (the model's max_position_embeddings)"),
            });
        }
        // Every served adapter is read once and kept; the model thread swaps them in.
        let mut names = vec![opts.served_model_name.clone()];
        let mut roots = vec![opts.adapter.clone()];
        for (name, dir) in &opts.lora_modules {
            if names.contains(name) {
                return Err(Error::Config { field: "lora_modules", message: format!("`{name}` is served twice") });
            }
            names.push(name.clone());
            roots.push(Some(dir.clone()));
        }
        if resa_lora::remove(&mut model) > 0 {
            tracing::warn!("the model came with adapters attached; they were removed (serve them with adapter)");
        }
        let mut sets = Vec::with_capacity(names.len());
        for (name, root) in names.iter().zip(&roots) {
            let Some(dir) = root else {
                sets.push(None);
                continue;
            };
            resa_lora::load_adapter(&mut model, dir).map_err(|e| Error::Adapter {
                name: name.clone(),
                dir: dir.clone(),
                message: e.to_string(),
            })?;
            let set: Vec<Option<LowRank<B>>> = model.linears_mut().into_iter().map(|(_, l)| l.adapter.take()).collect();
            sets.push(Some(set));
        }
        let eos = resa_qwen2::stop_token_ids(&model.config().eos_token_ids, &tokenizer);
        let (tx, rx) = std_mpsc::channel::<Job>();
        let cancelled = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            names,
            roots,
            vocab: model.config().vocab_size,
            tokenizer,
            max_model_len,
            eos,
            max_choices: opts.max_choices,
            jobs: tx,
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            api_key: opts.api_key.clone(),
            max_queued: opts.max_queued,
            pending: AtomicUsize::new(0),
            cancelled: cancelled.clone(),
        });
        let max_batch = opts.max_batch;
        std::thread::Builder::new()
            .name("resa-serve-model".into())
            .spawn(move || decode_loop(model, &sets, &rx, max_batch, &cancelled))
            .map_err(|e| Error::Stopped(format!("cannot start the model thread: {e}")))?;

        let addr_text = format!("{}:{}", opts.host, opts.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Stopped(format!("cannot start the runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&addr_text))
            .map_err(|cause| Error::Bind { addr: addr_text.clone(), cause })?;
        let addr = listener.local_addr().map_err(|cause| Error::Bind { addr: addr_text.clone(), cause })?;
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat_completions))
            .fallback(|| async {
                error(StatusCode::NOT_FOUND, "NotFoundError", "no such route; see /v1/models".into())
            })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), authorize))
            .route("/health", get(|| async { StatusCode::OK }))
            .with_state(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("resa-serve-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_rx.await;
                        })
                        .await
                        .map_err(|cause| Error::Bind { addr: addr_text, cause })
                })
            })
            .map_err(|e| Error::Stopped(format!("cannot start the HTTP thread: {e}")))?;
        tracing::info!("serving on http://{addr}/v1");
        Ok(Server { addr, shared, shutdown: Some(stop_tx), thread: Some(thread) })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has counted so far.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            pending: self.shared.pending.load(Ordering::SeqCst),
            cancelled: self.shared.cancelled.load(Ordering::SeqCst),
        }
    }

    /// Stops accepting requests, lets those in flight finish, and returns.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down.
    pub fn wait(mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Stopped(format!("cannot start the signal runtime: {e}")))?;
        runtime.block_on(async {
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| Error::Stopped(format!("cannot watch SIGTERM: {e}")))?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            Ok::<(), Error>(())
        })?;
        tracing::info!("shutting down");
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Stopped("the HTTP thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The model thread: continuous batching. Waiting jobs join the batch between decode steps
/// (up to `max_batch` sequences) and leave it when they finish. Jobs are admitted in arrival
/// order; one for another served adapter waits until the batch drains, then that adapter is
/// swapped in.
fn decode_loop<B: Backend>(
    mut model: Qwen2ForCausalLM<B>,
    sets: &[Option<Vec<Option<LowRank<B>>>>],
    rx: &std_mpsc::Receiver<Job>,
    max_batch: usize,
    cancelled: &AtomicU64,
) {
    type Reply = oneshot::Sender<std::result::Result<Generated, String>>;
    let mut decoder = BatchDecoder::<B, Reply>::new();
    let mut waiting: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    let mut attached: Option<usize> = None;
    let mut steps = 0u64;
    loop {
        if decoder.is_empty() && waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(rx.try_iter());
        // Sequences nobody waits for any more (the client went away) end here.
        let before = waiting.len();
        waiting.retain(|j| !j.reply.is_closed());
        let gone = (before - waiting.len()) + decoder.cancel(|reply| reply.is_closed()).len();
        if gone > 0 {
            cancelled.fetch_add(gone as u64, Ordering::SeqCst);
            tracing::debug!(gone, "sequences of clients that went away were ended");
        }
        if decoder.is_empty()
            && let Some(front) = waiting.front()
            && attached != Some(front.key.served)
        {
            resa_lora::remove(&mut model);
            if let Some(Some(set)) = sets.get(front.key.served) {
                for ((_, lin), a) in model.linears_mut().into_iter().zip(set) {
                    lin.adapter = a.clone();
                }
            }
            attached = Some(front.key.served);
        }
        while decoder.len() < max_batch && waiting.front().is_some_and(|j| Some(j.key.served) == attached) {
            let Some(job) = waiting.pop_front() else { break };
            let req = DecodeRequest {
                prompt: job.ids,
                seed: job.seed,
                cfg: GenerationConfig {
                    max_new_tokens: job.key.max_new_tokens,
                    sampling: job.key.sampling,
                    seed: 0,
                    stop_token_ids: job.key.stop,
                    pad_token_id: 0,
                },
            };
            match decoder.add(&model, job.reply, req) {
                Ok(Some((reply, g))) => {
                    let _ = reply.send(Ok(g));
                }
                Ok(None) => {}
                Err((reply, e)) => {
                    tracing::error!("a request could not join the batch: {e}");
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
        if decoder.is_empty() {
            continue;
        }
        match decoder.step(&model) {
            Ok(finished) => {
                for (reply, g) in finished {
                    let _ = reply.send(Ok(g));
                }
            }
            Err(e) => {
                tracing::error!("decoding failed: {e}");
                for (reply, _) in decoder.drain() {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
        steps += 1;
        if steps.is_multiple_of(256) {
            tracing::debug!(batch = decoder.len(), waiting = waiting.len(), steps, "decoding");
        }
    }
}

/// With an API key, every request must carry `Authorization: Bearer KEY` (401 otherwise).
async fn authorize(
    State(s): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(key) = &s.api_key else { return next.run(request).await };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), key.as_bytes())) {
        next.run(request).await
    } else {
        error(StatusCode::UNAUTHORIZED, "AuthenticationError", "Unauthorized: a valid API key is required".into())
    }
}

/// The sequences of one request counted in [`Shared::pending`] while it is in flight.
struct Pending<'a> {
    shared: &'a Shared,
    n: usize,
}

impl<'a> Pending<'a> {
    /// Counts `n` more sequences, or refuses when that would exceed the bound.
    fn admit(shared: &'a Shared, n: usize) -> std::result::Result<Self, Response> {
        if n > shared.max_queued {
            // Waiting would not help: refused as a client error.
            return Err(bad(format!(
                "this request asks for {n} sequences; the server queues at most {}",
                shared.max_queued
            )));
        }
        let before = shared.pending.fetch_add(n, Ordering::SeqCst);
        if before + n > shared.max_queued {
            shared.pending.fetch_sub(n, Ordering::SeqCst);
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableError",
                format!(
                    "the server is busy: {before} sequences are waiting or decoding and it takes at most {} \
                     (this request asks for {n}); retry later",
                    shared.max_queued
                ),
            ));
        }
        Ok(Pending { shared, n })
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.shared.pending.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (status, axum::Json(json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}})))
        .into_response()
}

fn bad(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequestError", message)
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    let data: Vec<Value> = s
        .names
        .iter()
        .zip(&s.roots)
        .enumerate()
        .map(|(i, (name, root))| {
            json!({
                "id": name,
                "object": "model",
                "created": s.created,
                "owned_by": "resa",
                "root": root.as_ref().map(|r| r.display().to_string()),
                "parent": if i == 0 { Value::Null } else { json!(s.names[0]) },
                "max_model_len": s.max_model_len,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// The seed of choice `i` of a request seeded with `seed`: `seed` itself for the first.
pub fn choice_seed(seed: u64, i: usize) -> u64 {
    if i == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Settings common to both endpoints, read from the request body.
struct Params {
    served: usize,
    max_tokens: Option<usize>,
    sampling: Sampling,
    n: usize,
    seed: Option<u64>,
    stop: Vec<u32>,
    skip_special_tokens: bool,
}

fn field_u64(body: &Value, key: &str) -> std::result::Result<Option<u64>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(format!("`{key}` must be a non-negative integer, got {v}"))),
    }
}

fn field_f64(body: &Value, key: &str) -> std::result::Result<Option<f64>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(format!("`{key}` must be a number, got {v}"))),
    }
}

fn field_bool(body: &Value, key: &str, default: bool) -> std::result::Result<bool, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| bad(format!("`{key}` must be true or false, got {v}"))),
    }
}

fn params(s: &Shared, body: &Value) -> std::result::Result<Params, Response> {
    let served = match body.get("model").and_then(Value::as_str) {
        Some(m) => match s.names.iter().position(|n| n == m) {
            Some(i) => i,
            None => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "NotFoundError",
                    format!("The model `{m}` does not exist. This server serves: {}.", s.names.join(", ")),
                ));
            }
        },
        None => return Err(bad(format!("`model` is required (this server serves: {})", s.names.join(", ")))),
    };
    if field_bool(body, "stream", false)? {
        return Err(bad("`stream: true` is not supported by resa serve; send `stream: false`".into()));
    }
    for key in ["logprobs", "top_logprobs", "echo", "best_of", "suffix", "logit_bias", "tools"] {
        match body.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Number(n)) if key == "best_of" && n.as_u64() == Some(1) => {}
            Some(v) => return Err(bad(format!("`{key}` ({v}) is not supported by resa serve"))),
        }
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(v) => {
            return Err(bad(format!("`stop` strings ({v}) are not supported by resa serve; use stop_token_ids")));
        }
    }
    let temperature = field_f64(body, "temperature")?.unwrap_or(1.0);
    let top_p = field_f64(body, "top_p")?.unwrap_or(1.0);
    let top_k = match body.get("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(-1 | 0) => None,
            Some(k) if k > 0 => Some(k as usize),
            _ => return Err(bad(format!("`top_k` must be a positive integer or -1, got {v}"))),
        },
    };
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(bad(format!("`temperature` must be at least 0, got {temperature}")));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(format!("`top_p` must be in (0, 1], got {top_p}")));
    }
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample { temperature: temperature as f32, top_p: top_p as f32, top_k }
    };
    let n = field_u64(body, "n")?.unwrap_or(1) as usize;
    if n == 0 {
        return Err(bad("`n` must be at least 1".into()));
    }
    let max_tokens = match field_u64(body, "max_tokens")?.or(field_u64(body, "max_completion_tokens")?) {
        Some(0) => return Err(bad("`max_tokens` must be at least 1".into())),
        other => other.map(|m| m as usize),
    };
    let mut stop = s.eos.clone();
    match body.get("stop_token_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(ids)) => {
            for v in ids {
                match v.as_u64() {
                    Some(id) if (id as usize) < s.vocab => stop.push(id as u32),
                    _ => return Err(bad(format!("`stop_token_ids` holds {v}, not an id below {}", s.vocab))),
                }
            }
        }
        Some(v) => return Err(bad(format!("`stop_token_ids` must be a list of ids, got {v}"))),
    }
    stop.sort_unstable();
    stop.dedup();
    Ok(Params {
        served,
        max_tokens,
        sampling,
        n,
        seed: field_u64(body, "seed")?,
        stop,
        skip_special_tokens: field_bool(body, "skip_special_tokens", true)?,
    })
}

fn parse_body(bytes: &Bytes) -> std::result::Result<Value, Response> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(v) => Err(bad(format!("the body must be a JSON object, got {v}"))),
        Err(e) => Err(bad(format!("the body is not JSON: {e}"))),
    }
}

/// Generated choices of `prompts` (each `n` times), in OpenAI's order.
async fn run_jobs(
    s: &Shared,
    prompts: Vec<Vec<u32>>,
    p: &Params,
    default_max: impl Fn(usize) -> usize,
) -> std::result::Result<(Vec<Generated>, usize), Response> {
    if prompts.len() * p.n > s.max_choices {
        return Err(bad(format!("{} prompts × n {} exceed {} choices per request", prompts.len(), p.n, s.max_choices)));
    }
    let _pending = Pending::admit(s, prompts.len() * p.n)?;
    let mut waiting = Vec::new();
    let mut prompt_tokens = 0;
    for (i, ids) in prompts.into_iter().enumerate() {
        if ids.is_empty() {
            return Err(bad(format!("prompt {i} is empty")));
        }
        if let Some(&id) = ids.iter().find(|&&t| t as usize >= s.vocab) {
            return Err(bad(format!("prompt {i} holds token id {id}, outside the vocabulary of {}", s.vocab)));
        }
        let max_new = p.max_tokens.unwrap_or_else(|| default_max(ids.len()));
        if max_new == 0 || ids.len() + max_new > s.max_model_len {
            return Err(bad(format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the \
                 messages, {} in the completion). Please reduce the length of the messages or completion.",
                s.max_model_len,
                ids.len() + max_new,
                ids.len(),
                max_new
            )));
        }
        prompt_tokens += ids.len();
        let base = p.seed.unwrap_or_else(rand::random);
        for c in 0..p.n {
            let (tx, rx) = oneshot::channel();
            let job = Job {
                ids: ids.clone(),
                seed: choice_seed(base, c),
                key: GenKey { served: p.served, sampling: p.sampling, max_new_tokens: max_new, stop: p.stop.clone() },
                reply: tx,
            };
            s.jobs.send(job).map_err(|_| internal("the model thread has stopped".into()))?;
            waiting.push(rx);
        }
    }
    let mut out = Vec::with_capacity(waiting.len());
    for rx in waiting {
        match rx.await {
            Ok(Ok(g)) => out.push(g),
            Ok(Err(e)) => return Err(internal(format!("generation failed: {e}"))),
            Err(_) => return Err(internal("the model thread has stopped".into())),
        }
    }
    Ok((out, prompt_tokens))
}

fn internal(message: String) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", message)
}

/// The text of a generated sequence (the final stop token left out, as vLLM does) and its
/// finish reason.
fn text_of(s: &Shared, g: &Generated, skip_special: bool) -> std::result::Result<(String, &'static str), Response> {
    let (body, finish) = match g.finish_reason {
        FinishReason::Stop(_) => (&g.ids[..g.ids.len().saturating_sub(1)], "stop"),
        FinishReason::MaxTokens => (&g.ids[..], "length"),
    };
    let text = s.tokenizer.decode(body, skip_special).map_err(|e| internal(format!("decoding failed: {e}")))?;
    Ok((text, finish))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn request_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// A handler's answer: an OpenAI-style error is an answer too.
type Answer = std::result::Result<Response, Response>;

async fn completions(State(s): State<Arc<Shared>>, bytes: Bytes) -> Answer {
    let body = parse_body(&bytes)?;
    let p = params(&s, &body)?;
    let add_special = field_bool(&body, "add_special_tokens", true)?;
    let encode = |text: &str| s.tokenizer.encode(text, add_special).map_err(|e| bad(format!("cannot tokenise: {e}")));
    let ids_of = |v: &Value| -> Option<Vec<u32>> {
        v.as_array()?.iter().map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok())).collect()
    };
    let prompts: Vec<Vec<u32>> = match body.get("prompt") {
        Some(Value::String(t)) => vec![encode(t)?],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().map(|t| encode(t.as_str().unwrap_or_default())).collect::<std::result::Result<_, _>>()?
        }
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, v)| ids_of(v).ok_or_else(|| bad(format!("prompt {i} is not a list of token ids"))))
            .collect::<std::result::Result<_, _>>()?,
        Some(v @ Value::Array(_)) => {
            vec![ids_of(v).ok_or_else(|| bad("`prompt` is not a list of token ids".into()))?]
        }
        _ => {
            return Err(bad(
                "`prompt` must be a string, a list of strings, token ids, or a list of token-id lists".into()
            ));
        }
    };
    let (generated, prompt_tokens) = run_jobs(&s, prompts, &p, |_| 16).await?;
    answer(&s, &p, &generated, prompt_tokens, false)
}

async fn chat_completions(State(s): State<Arc<Shared>>, bytes: Bytes) -> Answer {
    let body = parse_body(&bytes)?;
    let p = params(&s, &body)?;
    let Some(Value::Array(raw)) = body.get("messages") else {
        return Err(bad("`messages` must be a list of {role, content} objects".into()));
    };
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        match (m.get("role").and_then(Value::as_str), m.get("content").and_then(Value::as_str)) {
            (Some(role), Some(content)) => messages.push(ChatMessage { role: role.into(), content: content.into() }),
            _ => return Err(bad(format!("messages[{i}] must have a string `role` and a string `content`"))),
        }
    }
    if messages.is_empty() {
        return Err(bad("`messages` is empty".into()));
    }
    let add_special = field_bool(&body, "add_special_tokens", false)?;
    let ids = s
        .tokenizer
        .apply_chat_template(&messages, true)
        .and_then(|text| s.tokenizer.encode(&text, add_special))
        .map_err(|e| bad(format!("the chat template failed: {e}")))?;
    let room = s.max_model_len;
    let (generated, prompt_tokens) = run_jobs(&s, vec![ids], &p, |len| room.saturating_sub(len)).await?;
    answer(&s, &p, &generated, prompt_tokens, true)
}

/// The OpenAI answer of a completions (`chat` false) or chat-completions request.
fn answer(s: &Shared, p: &Params, generated: &[Generated], prompt_tokens: usize, chat: bool) -> Answer {
    let mut choices = Vec::with_capacity(generated.len());
    let mut completion_tokens = 0;
    for (index, g) in generated.iter().enumerate() {
        let (text, finish) = text_of(s, g, p.skip_special_tokens)?;
        completion_tokens += g.ids.len();
        choices.push(if chat {
            json!({
                "index": index,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": null,
            })
        } else {
            json!({"index": index, "text": text, "finish_reason": finish, "logprobs": null})
        });
    }
    let (id, object) = if chat { ("chatcmpl", "chat.completion") } else { ("cmpl", "text_completion") };
    Ok(axum::Json(json!({
        "id": request_id(id),
        "object": object,
        "created": now(),
        "model": s.names[p.served],
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens * p.n,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens * p.n + completion_tokens,
        },
    }))
    .into_response())
}
