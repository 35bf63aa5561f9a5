//! An OpenAI-compatible client engine: the runner's requests sent to `/v1/completions` of any
//! server that speaks the API (vLLM, SGLang, TGI, `resa serve`).
//!
//! Every engine must see identical tokens, so the prompt is rendered and tokenised here (the
//! chat template applied by the runner) and sent as token ids (`"prompt": [ids]`, which vLLM,
//! SGLang and `resa serve` take); [`PromptFormat::Text`] sends the text with
//! `add_special_tokens: false` for servers that take only strings. Each (problem, sample) is
//! one request with `n = 1` and its own `seed` (the runner's [`crate::sample_seed`]), the
//! sampling settings of the [`crate::EvalConfig`], the stop ids of the model and
//! `skip_special_tokens: false`, so the completion text is recorded as the local engine
//! records it.
//!
//! Requests run `concurrency` at a time, each with a timeout; a refused connection, a timeout,
//! HTTP 408, 429 and 5xx are retried with exponential backoff (a `Retry-After` header is
//! honoured); other errors are not retried. Completions that finished before a failure are
//! handed to the runner (and so written to `completions.jsonl`) before the error returns: a
//! rerun resumes where completions stopped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::EvalConfig;
use crate::engine::{Completion, Engine, Finish, Request};
use crate::error::{Error, Result};
use resa_qwen2::Sampling;

/// How the prompt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// Token ids (`"prompt": [1, 2, 3]`): the server sees exactly this project's tokens.
    #[default]
    Tokens,
    /// The prompt text with `add_special_tokens: false` (the chat template already holds
    /// the BOS token); the server's tokenizer must be the model's.
    Text,
}

/// Settings of the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiConfig {
    /// The base URL with `/v1`, as OpenAI clients take it (`http://127.0.0.1:8000/v1`).
    pub endpoint: String,
    /// The served model's name; `None`: the one model the server lists (an error when it
    /// lists several).
    pub model: Option<String>,
    /// The environment variable holding the API key (sent as `Authorization: Bearer`);
    /// unset or empty: no key.
    pub api_key_env: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds one request may take (a long completion on a busy server takes minutes).
    pub request_timeout_s: f64,
    /// Seconds to open a connection.
    pub connect_timeout_s: f64,
    /// Retries of a request after a retryable failure (connection refused or reset,
    /// timeout, HTTP 408, 429, 5xx).
    pub max_retries: u32,
    /// Seconds before the first retry; doubled after each, up to `max_backoff_s`.
    pub backoff_s: f64,
    /// The longest wait between retries.
    pub max_backoff_s: f64,
    /// How the prompt is sent.
    pub prompt_format: PromptFormat,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            endpoint: "http://127.0.0.1:8000/v1".into(),
            model: None,
            api_key_env: "OPENAI_API_KEY".into(),
            concurrency: 64,
            request_timeout_s: 3600.0,
            connect_timeout_s: 10.0,
            max_retries: 8,
            backoff_s: 1.0,
            max_backoff_s: 60.0,
            prompt_format: PromptFormat::Tokens,
        }
    }
}

impl OpenAiConfig {
    /// Checks the settings before any request.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: String| Err(Error::Config { field, message });
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return bad(
                "endpoint",
                format!("{:?} is not an http:// or https:// URL (the base URL with /v1)", self.endpoint),
            );
        }
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1".into());
        }
        for (field, v) in [
            ("request_timeout", self.request_timeout_s),
            ("connect_timeout", self.connect_timeout_s),
            ("backoff", self.backoff_s),
            ("max_backoff", self.max_backoff_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("{v} is not a positive number of seconds"));
            }
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint.trim_end_matches('/'))
    }
}

/// A failed attempt: retried or not.
enum Failure {
    Retry(String, Option<Duration>),
    Fatal(Error),
}

/// The client engine.
pub struct OpenAiEngine {
    cfg: OpenAiConfig,
    agent: ureq::Agent,
    model: String,
    max_model_len: Option<usize>,
    stop_token_ids: Vec<u32>,
    api_key: Option<String>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServedModel {
    /// The name requests use.
    pub id: String,
    /// The context length, when the server says (vLLM, `resa serve`).
    #[serde(default)]
    pub max_model_len: Option<usize>,
}

impl OpenAiEngine {
    /// Connects: checks the settings, lists the served models (retrying while the server is
    /// unreachable, as for any request) and picks `cfg.model` among them. `stop_token_ids`
    /// are sent with every request ([`crate::stop_token_ids`]).
    pub fn connect(cfg: OpenAiConfig, stop_token_ids: Vec<u32>) -> Result<Self> {
        cfg.validate()?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs_f64(cfg.connect_timeout_s))
            .timeout(Duration::from_secs_f64(cfg.request_timeout_s))
            .build();
        let api_key = std::env::var(&cfg.api_key_env).ok().filter(|k| !k.is_empty());
        let mut engine =
            OpenAiEngine { cfg, agent, model: String::new(), max_model_len: None, stop_token_ids, api_key };
        let served = engine.models()?;
        let chosen = match &engine.cfg.model {
            Some(name) => served.iter().find(|m| &m.id == name).cloned().ok_or_else(|| Error::ModelNotServed {
                endpoint: engine.cfg.endpoint.clone(),
                model: name.clone(),
                served: served.iter().map(|m| m.id.clone()).collect(),
            })?,
            None => match served.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(Error::ModelNotServed {
                        endpoint: engine.cfg.endpoint.clone(),
                        model: "(none named: give the served model's name)".into(),
                        served: served.iter().map(|m| m.id.clone()).collect(),
                    });
                }
            },
        };
        engine.model = chosen.id;
        engine.max_model_len = chosen.max_model_len;
        Ok(engine)
    }

    /// The served model requests go to.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `GET /v1/models`.
    pub fn models(&self) -> Result<Vec<ServedModel>> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<ServedModel>,
        }
        let url = self.cfg.url("models");
        let body = self.with_retries("GET /models", || self.attempt(&url, None))?;
        let list: List = serde_json::from_value(body).map_err(|e| Error::Server {
            endpoint: self.cfg.endpoint.clone(),
            status: 200,
            message: format!("GET {url}: not a model list ({e}); is the endpoint the base URL with /v1?"),
        })?;
        Ok(list.data)
    }

    /// The request body for one completion.
    pub fn request_body(&self, request: &Request<'_>, cfg: &EvalConfig) -> Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": cfg.max_new_tokens,
            "n": 1,
            "seed": request.seed,
            "stop_token_ids": self.stop_token_ids,
            "skip_special_tokens": false,
            "stream": false,
        });
        match self.cfg.prompt_format {
            PromptFormat::Tokens => body["prompt"] = json!(request.prompt_ids),
            PromptFormat::Text => {
                body["prompt"] = json!(request.prompt);
                body["add_special_tokens"] = json!(false);
            }
        }
        match cfg.sampling {
            Sampling::Greedy => body["temperature"] = json!(0.0),
            Sampling::Sample { temperature, top_p, top_k } => {
                body["temperature"] = json!(temperature);
                body["top_p"] = json!(top_p);
                if let Some(k) = top_k {
                    body["top_k"] = json!(k);
                }
            }
        }
        body
    }

    /// One attempt of a request (`body` `None`: a GET).
    fn attempt(&self, url: &str, body: Option<&Value>) -> std::result::Result<Value, Failure> {
        let mut req = match body {
            Some(_) => self.agent.post(url).set("Content-Type", "application/json"),
            None => self.agent.get(url),
        };
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let result = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        let endpoint = &self.cfg.endpoint;
        match result {
            Ok(resp) => {
                let text = resp.into_string().map_err(|e| Failure::Retry(format!("reading the answer: {e}"), None))?;
                serde_json::from_str(&text).map_err(|e| {
                    Failure::Fatal(Error::Server {
                        endpoint: endpoint.clone(),
                        status: 200,
                        message: format!("{url}: the answer is not JSON ({e}): {}", clip(&text)),
                    })
                })
            }
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after =
                    resp.header("Retry-After").and_then(|v| v.trim().parse::<f64>().ok()).map(Duration::from_secs_f64);
                let text = resp.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v["error"]["message"]
                            .as_str()
                            .or(v["message"].as_str())
                            .or(v["detail"].as_str())
                            .map(String::from)
                    })
                    .unwrap_or_else(|| clip(&text));
                match status {
                    408 | 429 | 500..=599 => Err(Failure::Retry(format!("HTTP {status}: {message}"), retry_after)),
                    _ => Err(Failure::Fatal(Error::Server { endpoint: endpoint.clone(), status, message })),
                }
            }
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme
                | ureq::ErrorKind::InsecureRequestHttpsOnly => {
                    Err(Failure::Fatal(Error::Config { field: "endpoint", message: format!("{url}: {t}") }))
                }
                _ => Err(Failure::Retry(t.to_string(), None)),
            },
        }
    }

    fn with_retries(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> std::result::Result<Value, Failure>,
    ) -> Result<Value> {
        let mut wait = Duration::from_secs_f64(self.cfg.backoff_s);
        let max_wait = Duration::from_secs_f64(self.cfg.max_backoff_s);
        for n in 0..=self.cfg.max_retries {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(cause, retry_after)) => {
                    if n == self.cfg.max_retries {
                        return Err(Error::Unreachable {
                            endpoint: self.cfg.endpoint.clone(),
                            attempts: n + 1,
                            cause: format!("{what}: {cause}"),
                        });
                    }
                    let pause = retry_after.unwrap_or(wait).min(max_wait);
                    tracing::warn!(
                        endpoint = %self.cfg.endpoint,
                        "{what}: {cause}; retry {} of {} in {:.1} s",
                        n + 1,
                        self.cfg.max_retries,
                        pause.as_secs_f64()
                    );
                    std::thread::sleep(pause);
                    wait = (wait * 2).min(max_wait);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// One completion, retried as configured.
    fn complete(&self, request: &Request<'_>, cfg: &EvalConfig) -> Result<Completion> {
        let body = self.request_body(request, cfg);
        let url = self.cfg.url("completions");
        let what = format!("{} {} sample {}", request.bench, request.id, request.sample);
        let answer = self.with_retries(&what, || self.attempt(&url, Some(&body))).map_err(|e| match e {
            Error::Server { status: 400, message, .. } if is_context_error(&message) => Error::ContextLength {
                endpoint: self.cfg.endpoint.clone(),
                bench: request.bench.to_string(),
                id: request.id.to_string(),
                prompt_tokens: request.prompt_ids.len(),
                max_tokens: cfg.max_new_tokens,
                max_model_len: self.max_model_len,
                message,
            },
            Error::Server { status: 404, message, endpoint } => Error::ModelNotServed {
                endpoint,
                model: self.model.clone(),
                served: vec![format!("(the server said: {message})")],
            },
            e => e,
        })?;
        self.parse(&answer, request)
    }

    fn parse(&self, answer: &Value, request: &Request<'_>) -> Result<Completion> {
        let bad = |message: String| Error::Server {
            endpoint: self.cfg.endpoint.clone(),
            status: 200,
            message: format!("{} {} sample {}: {message}", request.bench, request.id, request.sample),
        };
        let choice = &answer["choices"][0];
        let text = choice["text"]
            .as_str()
            .ok_or_else(|| bad(format!("no choices[0].text in {}", clip(&answer.to_string()))))?;
        let finish = match choice["finish_reason"].as_str() {
            Some("stop") => Finish::Stop,
            Some("length") => Finish::Length,
            other => return Err(bad(format!("finish_reason {other:?} is neither \"stop\" nor \"length\""))),
        };
        let new_tokens = answer["usage"]["completion_tokens"]
            .as_u64()
            .ok_or_else(|| bad("no usage.completion_tokens (token counts are part of the report)".into()))?
            as usize;
        Ok(Completion { text: text.to_string(), new_tokens, finish })
    }
}

fn is_context_error(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("context length") || m.contains("maximum context") || m.contains("max_model_len")
}

fn clip(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

impl Engine for OpenAiEngine {
    fn chunk_size(&self) -> usize {
        usize::MAX
    }

    fn generate(
        &mut self,
        requests: &[Request<'_>],
        cfg: &EvalConfig,
        done: &mut dyn FnMut(usize, Completion) -> Result<()>,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let workers = self.cfg.concurrency.min(requests.len());
        let this = &*self;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<Completion>)>();
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = requests.get(i) else { break };
                        let result = this.complete(request, cfg);
                        let failed = result.is_err();
                        if tx.send((i, result)).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // Every finished completion reaches `done`, also after a failure (the workers
            // still in flight finish their request and stop).
            let mut first_error = None;
            for (i, result) in rx {
                match result.and_then(|c| done(i, c)) {
                    Ok(()) => {}
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn describe(&self) -> String {
        format!("openai {} ({})", self.cfg.endpoint, self.model)
    }
}
