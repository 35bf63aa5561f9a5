//! The server under load, in process on loopback: 32 concurrent clients send 2,048 requests
//! — good ones mixed with malformed JSON, wrong types, huge values, wrong API keys and
//! clients that hang up mid-request. The server never fails, every good request gets
//! exactly the completion it gets alone, every bad one its error status, nothing stays
//! queued, and its resident memory after the run stays within 10 % of after the warm-up.
//! p50/p99 latency and throughput are printed (`--nocapture`), not asserted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use resa_qwen2::burn::backend::Flex;
use resa_qwen2::burn::tensor::DType;
use resa_qwen2::{Qwen2Config, Qwen2ForCausalLM, Tokenizer};
use resa_serve::{ServeOptions, Server};
use serde_json::{Value, json};

const KEY: &str = "load-test-key";
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 64;

/// One raw HTTP/1.1 exchange; `None` when the client hung up on purpose.
fn exchange(addr: std::net::SocketAddr, path: &str, auth: &str, body: &[u8], hang_up: bool) -> Option<(u16, Value)> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    if hang_up {
        // Half the body, then gone.
        let _ = s.write_all(&body[..body.len() / 2]);
        return None;
    }
    s.write_all(body).expect("body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let json = text.split("\r\n\r\n").nth(1).map_or(Value::Null, |b| serde_json::from_str(b).unwrap_or(Value::Null));
    Some((status, json))
}

/// The texts of an answer's choices, in order.
fn texts(answer: &Value) -> Vec<String> {
    answer["choices"].as_array().expect("choices").iter().map(|c| c["text"].as_str().unwrap_or("").into()).collect()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The good requests: (body, the text it gets alone).
fn good_requests() -> Vec<Value> {
    (0..16)
        .map(|i| {
            json!({
                "model": "toy",
                "prompt": format!("Q: What is {}+{}?", i % 9 + 1, i / 2 + 1),
                "max_tokens": 6 + i % 5,
                "temperature": if i % 2 == 0 { 0.0 } else { 0.8 },
                "seed": 100 + i,
                "n": 1 + i % 3,
            })
        })
        .collect()
}

#[test]
fn the_server_survives_a_storm_of_good_and_bad_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    resa_toy::world::write_tokenizer(dir.path()).expect("tokenizer");
    let tokenizer = Tokenizer::from_dir(dir.path()).expect("tokenizer");
    let cfg =
        Qwen2Config { vocab_size: resa_toy::world::vocab_size(), max_position_embeddings: 64, ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 11, &Default::default(), DType::F32);
    let opts = ServeOptions {
        port: 0,
        served_model_name: "toy".into(),
        max_batch: 8,
        api_key: Some(KEY.into()),
        ..ServeOptions::default()
    };
    let server = Server::start(model, tokenizer, opts).expect("starts");
    let addr = server.addr();
    let bearer = format!("Bearer {KEY}");

    // Each good request alone, twice (warm-up): the answers every later one must equal.
    let good = good_requests();
    let mut alone: HashMap<usize, Vec<String>> = HashMap::new();
    for _ in 0..2 {
        for (i, body) in good.iter().enumerate() {
            let (status, v) =
                exchange(addr, "/v1/completions", &bearer, body.to_string().as_bytes(), false).expect("answer");
            assert_eq!(status, 200, "{v}");
            let texts = texts(&v);
            if let Some(before) = alone.insert(i, texts.clone()) {
                assert_eq!(before, texts, "the same request twice");
            }
        }
    }

    let bad: Vec<(String, &[u8], u16)> = vec![
        ("Bearer nope".into(), b"{\"model\": \"toy\", \"prompt\": \"Q\"}", 401),
        (bearer.clone(), b"{\"model\": \"toy\", \"prompt\": ", 400),
        (bearer.clone(), b"{\"model\": \"toy\", \"prompt\": \"Q\", \"max_tokens\": \"many\"}", 400),
        (bearer.clone(), b"{\"model\": \"toy\", \"prompt\": \"Q\", \"max_tokens\": 1000000000000}", 400),
        (bearer.clone(), b"{\"model\": \"toy\", \"prompt\": \"Q\", \"n\": 1000000000}", 400),
        (bearer.clone(), b"{\"model\": \"toy\", \"prompt\": [1, 4294967296]}", 400),
        (bearer.clone(), b"{\"model\": 7, \"prompt\": \"Q\"}", 400),
        (bearer.clone(), b"[1, 2, 3]", 400),
    ];
    // A concurrent warm-up (the allocator's per-thread arenas, the runtime's buffers), then
    // the storm.
    storm(addr, &good, &alone, &bad, &bearer, PER_CLIENT / 2);
    let rss_warm = rss_kib();
    let started = Instant::now();
    let mut l = storm(addr, &good, &alone, &bad, &bearer, PER_CLIENT);
    let wall = started.elapsed();
    let total = CLIENTS * PER_CLIENT;
    assert!(total >= 2000);
    l.sort_unstable();
    let pct = |q: f64| l[((l.len() as f64 - 1.0) * q) as usize];
    eprintln!(
        "load: {total} requests from {CLIENTS} clients in {:.2} s ({:.0} requests/s); latency p50 {:?}, p99 {:?}",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    // Nothing is left queued, and the server still answers.
    let t0 = Instant::now();
    while server.stats().pending > 0 && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.stats().pending, 0, "{:?}", server.stats());
    let (status, _) =
        exchange(addr, "/v1/completions", &bearer, good[0].to_string().as_bytes(), false).expect("answer");
    assert_eq!(status, 200);
    let rss_after = rss_kib();
    eprintln!("load: resident memory {rss_warm} KiB after the warm-up, {rss_after} KiB after the run");
    assert!(rss_after as f64 <= rss_warm as f64 * 1.10, "resident memory grew from {rss_warm} KiB to {rss_after} KiB");
    server.shutdown().expect("shuts down");
}

/// `CLIENTS` clients sending `per_client` requests each, good and bad mixed; returns the
/// latencies. Panics on any answer that is not the expected one.
fn storm(
    addr: std::net::SocketAddr,
    good: &[Value],
    alone: &HashMap<usize, Vec<String>>,
    bad: &[(String, &[u8], u16)],
    bearer: &str,
    per_client: usize,
) -> Vec<Duration> {
    let latencies = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let latencies = &latencies;
            scope.spawn(move || {
                for r in 0..per_client {
                    let pick = (client * 7 + r * 13) % 20;
                    let t0 = Instant::now();
                    match pick {
                        0..=9 => {
                            let i = (client + r) % good.len();
                            let (status, v) =
                                exchange(addr, "/v1/completions", bearer, good[i].to_string().as_bytes(), false)
                                    .expect("answer");
                            assert_eq!(status, 200, "{v}");
                            assert_eq!(&texts(&v), &alone[&i], "request {i} under load");
                        }
                        10..=17 => {
                            let (auth, body, want) = &bad[pick - 10];
                            let (status, v) = exchange(addr, "/v1/completions", auth, body, false).expect("answer");
                            assert_eq!(status, *want, "{} → {v}", String::from_utf8_lossy(body));
                            assert!(v["error"]["message"].is_string(), "{v}");
                        }
                        _ => {
                            let i = (client + r) % good.len();
                            assert!(
                                exchange(addr, "/v1/completions", bearer, good[i].to_string().as_bytes(), true)
                                    .is_none()
                            );
                        }
                    }
                    if let Ok(mut l) = latencies.lock() {
                        l.push(t0.elapsed());
                    }
                }
            });
        }
    });
    latencies.into_inner().expect("latencies")
}
