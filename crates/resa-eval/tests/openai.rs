//! The OpenAI-compatible client against a scripted loopback server: what it sends (token ids,
//! the per-request seed, the stop ids, the sampling settings), what it retries (HTTP 503 and
//! 429, a `Retry-After` honoured) and what it does not (a 400 for a context too short, a 404
//! for a model not served), with the typed errors a user sees.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use resa_eval::{Completion, Engine, Error, EvalConfig, Finish, OpenAiConfig, OpenAiEngine, Request};
use resa_qwen2::Sampling;
use serde_json::{Value, json};

/// Answers each connection's request with the next scripted (status, extra header, body);
/// records every request line and body.
fn scripted(answers: Vec<(u16, &'static str, Value)>) -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (status, header, body) in answers {
            let Ok((stream, _)) = listener.accept() else { return };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).expect("header");
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut buf = vec![0; length];
            reader.read_exact(&mut buf).expect("body");
            let sent: Value = if length == 0 { Value::Null } else { serde_json::from_slice(&buf).expect("json body") };
            log.lock().expect("log").push((line.trim().to_string(), sent));
            let text = body.to_string();
            let extra = if header.is_empty() { String::new() } else { format!("{header}\r\n") };
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}",
                text.len()
            )
            .expect("answer");
        }
    });
    (url, seen)
}

fn models() -> (u16, &'static str, Value) {
    (200, "", json!({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 64}]}))
}

fn config(url: &str) -> OpenAiConfig {
    OpenAiConfig {
        endpoint: url.into(),
        max_retries: 3,
        backoff_s: 0.01,
        max_backoff_s: 0.05,
        ..OpenAiConfig::default()
    }
}

fn request<'a>(ids: &'a [u32]) -> Request<'a> {
    Request { bench: "toy", id: "toy-0001", sample: 1, prompt: "Q: 1+1?", prompt_ids: ids, seed: 42 }
}

fn eval_cfg() -> EvalConfig {
    EvalConfig {
        sampling: Sampling::Sample { temperature: 0.6, top_p: 0.95, top_k: Some(20) },
        max_new_tokens: 8,
        ..EvalConfig::default()
    }
}

fn run(engine: &mut OpenAiEngine, ids: &[u32]) -> Result<Vec<Completion>, Error> {
    let mut got = Vec::new();
    engine.generate(&[request(ids)], &eval_cfg(), &mut |_, c| {
        got.push(c);
        Ok(())
    })?;
    Ok(got)
}

#[test]
fn retries_503_and_429_and_sends_what_the_runner_decided() {
    let completion = json!({
        "choices": [{"index": 0, "text": "<answer>2</answer>", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    });
    let (url, seen) = scripted(vec![
        models(),
        (503, "", json!({"error": {"message": "warming up"}})),
        (429, "Retry-After: 0", json!({"error": {"message": "slow down"}})),
        (200, "", completion),
    ]);
    let mut engine = OpenAiEngine::connect(config(&url), vec![7, 9]).expect("connects");
    assert_eq!(engine.model(), "m");
    let got = run(&mut engine, &[1, 2, 3]).expect("completes after two retries");
    assert_eq!(got, vec![Completion { text: "<answer>2</answer>".into(), new_tokens: 5, finish: Finish::Stop }]);
    let seen = seen.lock().expect("log");
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].0, "GET /v1/models HTTP/1.1");
    assert!(seen[1..].iter().all(|(line, _)| line == "POST /v1/completions HTTP/1.1"));
    let body = &seen[3].1;
    assert_eq!(body["prompt"], json!([1, 2, 3]));
    assert_eq!(body["seed"], json!(42));
    assert_eq!(body["n"], json!(1));
    assert_eq!(body["max_tokens"], json!(8));
    assert_eq!(body["stop_token_ids"], json!([7, 9]));
    assert_eq!(body["skip_special_tokens"], json!(false));
    assert_eq!(body["top_k"], json!(20));
    assert!((body["temperature"].as_f64().expect("t") - 0.6).abs() < 1e-6);
    assert_eq!(body["model"], json!("m"));
}

#[test]
fn a_context_error_and_a_missing_model_are_not_retried() {
    let (url, seen) = scripted(vec![
        models(),
        (
            400,
            "",
            json!({"error": {"message": "This model's maximum context length is 64 tokens. However, you requested 70 tokens"}}),
        ),
    ]);
    let mut engine = OpenAiEngine::connect(config(&url), vec![]).expect("connects");
    let err = run(&mut engine, &[1, 2]).expect_err("refused");
    assert!(
        matches!(&err, Error::ContextLength { prompt_tokens: 2, max_tokens: 8, max_model_len: Some(64), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("toy toy-0001") && err.to_string().contains("lower --max-new-tokens"), "{err}");
    assert_eq!(seen.lock().expect("log").len(), 2, "a 400 is not retried");

    let (url, _) = scripted(vec![models()]);
    let err = OpenAiEngine::connect(OpenAiConfig { model: Some("other".into()), ..config(&url) }, vec![])
        .err()
        .expect("not served");
    assert!(
        matches!(&err, Error::ModelNotServed { model, served, .. } if model == "other" && served == &["m"]),
        "{err}"
    );
}

#[test]
fn bad_settings_are_refused_before_any_request() {
    for (cfg, field) in [
        (OpenAiConfig { endpoint: "localhost:8000/v1".into(), ..OpenAiConfig::default() }, "endpoint"),
        (OpenAiConfig { concurrency: 0, ..OpenAiConfig::default() }, "concurrency"),
        (OpenAiConfig { request_timeout_s: 0.0, ..OpenAiConfig::default() }, "request_timeout"),
    ] {
        let err = OpenAiEngine::connect(cfg, vec![]).err().expect("refused");
        assert!(matches!(&err, Error::Config { field: f, .. } if *f == field), "{err}");
    }
}
