//! The server in process on a tiny random model with the toy tokenizer: each endpoint's
//! answer shape (OpenAI's), seeds (a request's seed gives the local generator's sequence,
//! choices differ), concurrent requests batched to the same answers as alone, and every
//! refusal as an OpenAI error with the status a client expects.

use resa_qwen2::burn::backend::Flex;
use resa_qwen2::burn::tensor::DType;
use resa_qwen2::{GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Sampling, Tokenizer, generate_seeded};
use resa_serve::{ServeOptions, Server};
use serde_json::{Value, json};

fn model() -> (Qwen2ForCausalLM<Flex>, Tokenizer) {
    let dir = tempfile::tempdir().expect("tmp");
    resa_toy::world::write_tokenizer(dir.path()).expect("tokenizer");
    let tokenizer = Tokenizer::from_dir(dir.path()).expect("tokenizer");
    let cfg =
        Qwen2Config { vocab_size: resa_toy::world::vocab_size(), max_position_embeddings: 64, ..Qwen2Config::tiny() };
    (Qwen2ForCausalLM::<Flex>::random(&cfg, 7, &Default::default(), DType::F32), tokenizer)
}

fn start() -> (Server, String, Qwen2ForCausalLM<Flex>, Tokenizer) {
    let (m, t) = model();
    let opts = ServeOptions { port: 0, served_model_name: "toy".into(), max_batch: 4, ..ServeOptions::default() };
    let server = Server::start(m.clone(), t.clone(), opts).expect("starts");
    let url = format!("http://{}", server.addr());
    (server, url, m, t)
}

fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    match ureq::post(&format!("{url}{path}")).send_string(&body.to_string()) {
        Ok(r) => (r.status(), serde_json::from_str(&r.into_string().expect("text")).expect("json")),
        Err(ureq::Error::Status(code, r)) => {
            (code, serde_json::from_str(&r.into_string().expect("text")).expect("json"))
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn endpoints_answer_as_openai_and_seeds_reproduce_the_local_generator() {
    let (server, url, model, tokenizer) = start();
    let models: Value = serde_json::from_str(
        &ureq::get(&format!("{url}/v1/models")).call().expect("models").into_string().expect("text"),
    )
    .expect("json");
    assert_eq!(models["data"][0]["id"], json!("toy"));
    assert_eq!(models["data"][0]["max_model_len"], json!(64));
    assert_eq!(ureq::get(&format!("{url}/health")).call().expect("health").status(), 200);

    let prompt = tokenizer.encode("<|bos|>Q: What is 2+3?\nA: <think>", false).expect("ids");
    let body = json!({"model": "toy", "prompt": prompt, "max_tokens": 10, "temperature": 0.8, "top_p": 0.9,
                      "seed": 11, "n": 3, "skip_special_tokens": false});
    let (status, answer) = post(&url, "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], json!("text_completion"));
    let choices = answer["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    // Choice 0 is the local generator's sequence for seed 11.
    let eos = tokenizer.eos_token_id().into_iter().collect::<Vec<_>>();
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        sampling: Sampling::Sample { temperature: 0.8, top_p: 0.9, top_k: None },
        seed: 0,
        stop_token_ids: eos.clone(),
        pad_token_id: eos[0],
    };
    let local = &generate_seeded(&model, std::slice::from_ref(&prompt), &[11], &cfg).expect("local")[0];
    let body_ids = match local.finish_reason {
        resa_qwen2::FinishReason::Stop(_) => &local.ids[..local.ids.len() - 1],
        resa_qwen2::FinishReason::MaxTokens => &local.ids[..],
    };
    assert_eq!(choices[0]["text"], json!(tokenizer.decode(body_ids, false).expect("decode")));
    let tokens: u64 = answer["usage"]["completion_tokens"].as_u64().expect("usage");
    assert!(tokens >= 3 && tokens <= 30, "{answer}");
    assert_eq!(answer["usage"]["prompt_tokens"], json!(3 * prompt.len()));
    // Same request, same answer; concurrent requests batched together answer the same.
    let again = post(&url, "/v1/completions", &body).1;
    assert_eq!(again["choices"], answer["choices"]);
    let together: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| post(&url, "/v1/completions", &body).1)).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for t in &together {
        assert_eq!(t["choices"], answer["choices"]);
    }

    // Text prompts and a list of them; chat.
    let (status, text) = post(
        &url,
        "/v1/completions",
        &json!({"model": "toy", "prompt": ["Q: 1+1?", "Q: 2+2?"], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!((status, text["choices"].as_array().map(Vec::len)), (200, Some(2)), "{text}");
    let (status, chat) = post(
        &url,
        "/v1/chat/completions",
        &json!({"model": "toy", "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 5, "seed": 1}),
    );
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["object"], json!("chat.completion"));
    assert_eq!(chat["choices"][0]["message"]["role"], json!("assistant"));
    assert!(
        chat["choices"][0]["finish_reason"] == json!("stop") || chat["choices"][0]["finish_reason"] == json!("length")
    );
    server.shutdown().expect("shuts down");
}

#[test]
fn refusals_are_openai_errors_with_the_right_status() {
    let (_server, url, _, _) = start();
    let cases = [
        (json!({"model": "gpt-4", "prompt": "x"}), 404, "does not exist"),
        (json!({"prompt": "x"}), 400, "`model` is required"),
        (json!({"model": "toy", "prompt": "x", "max_tokens": 100}), 400, "maximum context length is 64 tokens"),
        (json!({"model": "toy", "prompt": "x", "stream": true}), 400, "stream"),
        (json!({"model": "toy", "prompt": "x", "logprobs": 2}), 400, "logprobs"),
        (json!({"model": "toy", "prompt": "x", "stop": ["\n"]}), 400, "stop_token_ids"),
        (json!({"model": "toy", "prompt": "x", "temperature": -1}), 400, "temperature"),
        (json!({"model": "toy", "prompt": "x", "top_p": 0}), 400, "top_p"),
        (json!({"model": "toy", "prompt": "x", "n": 0}), 400, "`n`"),
        (json!({"model": "toy", "prompt": [1, 99999]}), 400, "outside the vocabulary"),
        (json!({"model": "toy", "prompt": []}), 400, "prompt"),
        (json!({"model": "toy", "prompt": "x", "max_tokens": "many"}), 400, "max_tokens"),
        (json!(["not", "an", "object"]), 400, "JSON object"),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = post(&url, "/v1/completions", &body);
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{body}: {answer}");
        assert!(message.contains(needle), "{body}: {message}");
        assert_eq!(answer["error"]["code"], json!(status));
    }
    let (got, answer) = post(&url, "/v1/chat/completions", &json!({"model": "toy", "messages": [{"role": "user"}]}));
    assert_eq!(got, 400, "{answer}");
    let r = ureq::post(&format!("{url}/v1/completions")).send_string("{not json");
    assert!(matches!(r, Err(ureq::Error::Status(400, _))));
    let r = ureq::get(&format!("{url}/v2/nothing")).call();
    assert!(matches!(r, Err(ureq::Error::Status(404, _))));
}

#[test]
fn bad_settings_are_refused_at_start() {
    let (m, t) = model();
    for (opts, field) in [
        (ServeOptions { max_batch: 0, port: 0, ..ServeOptions::default() }, "max_batch"),
        (ServeOptions { max_model_len: Some(65), port: 0, ..ServeOptions::default() }, "max_model_len"),
        (ServeOptions { served_model_name: " ".into(), port: 0, ..ServeOptions::default() }, "served_model_name"),
        (ServeOptions { max_queued: 0, port: 0, ..ServeOptions::default() }, "max_queued"),
        (ServeOptions { api_key: Some(String::new()), port: 0, ..ServeOptions::default() }, "api_key"),
        (ServeOptions { api_key: Some("two words".into()), port: 0, ..ServeOptions::default() }, "api_key"),
    ] {
        let err = Server::start(m.clone(), t.clone(), opts).err().expect("refused");
        assert!(matches!(&err, resa_serve::Error::Config { field: f, .. } if *f == field), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = Server::start(m, t, ServeOptions { port, ..ServeOptions::default() }).err().expect("port in use");
    assert!(matches!(err, resa_serve::Error::Bind { .. }), "{err}");
}

#[test]
fn lora_modules_are_served_beside_the_base_under_their_names() {
    use resa_qwen2::burn::module::Param;
    use resa_qwen2::burn::tensor::{Distribution, Tensor};
    let (base, tokenizer) = model();
    let tmp = tempfile::tempdir().expect("tmp");
    // Two adapters with non-zero updates, saved as PEFT folders.
    let mut dirs = Vec::new();
    for seed in [1u64, 2] {
        let mut m = base.clone();
        let cfg = resa_lora::LoraConfig::new(4, 8.0, 0.0, &["q_proj", "v_proj"]);
        resa_lora::attach(&mut m, &cfg, seed).expect("attach");
        for (_, lin) in m.linears_mut() {
            if let Some(a) = lin.adapter.as_mut() {
                let shape = a.b.val().shape();
                a.b = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.5), &Default::default()));
            }
        }
        let dir = tmp.path().join(format!("adapter-{seed}"));
        resa_lora::save_adapter(&m, &cfg, &dir).expect("save");
        dirs.push(dir);
    }
    let opts = ServeOptions {
        port: 0,
        served_model_name: "toy".into(),
        lora_modules: vec![("one".into(), dirs[0].clone()), ("two".into(), dirs[1].clone())],
        ..ServeOptions::default()
    };
    let server = Server::start(base.clone(), tokenizer.clone(), opts).expect("starts");
    let url = format!("http://{}", server.addr());
    let listed: Value = serde_json::from_str(
        &ureq::get(&format!("{url}/v1/models")).call().expect("models").into_string().expect("text"),
    )
    .expect("json");
    let ids: Vec<&str> = listed["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["toy", "one", "two"]);
    assert_eq!(listed["data"][1]["parent"], json!("toy"));

    let prompt = tokenizer.encode("<|bos|>Q: What is 4+4?\nA: <think>", false).expect("ids");
    let eos: Vec<u32> = tokenizer.eos_token_id().into_iter().collect();
    let cfg = GenerationConfig::greedy(12, eos.clone());
    let local = |adapter: Option<&std::path::Path>| {
        let mut m = base.clone();
        if let Some(dir) = adapter {
            resa_lora::load_adapter(&mut m, dir).expect("load");
        }
        let g = &generate_seeded(&m, std::slice::from_ref(&prompt), &[0], &cfg).expect("local")[0];
        let body = match g.finish_reason {
            resa_qwen2::FinishReason::Stop(_) => &g.ids[..g.ids.len() - 1],
            resa_qwen2::FinishReason::MaxTokens => &g.ids[..],
        };
        tokenizer.decode(body, false).expect("decode")
    };
    let expected = [("toy", local(None)), ("one", local(Some(&dirs[0]))), ("two", local(Some(&dirs[1])))];
    assert!(
        expected[0].1 != expected[1].1 || expected[1].1 != expected[2].1,
        "the adapters change nothing: {expected:?}"
    );
    // Interleaved requests: the model thread swaps the adapters in and out.
    for (name, want) in expected.iter().chain(expected.iter().rev()) {
        let body =
            json!({"model": name, "prompt": prompt, "max_tokens": 12, "temperature": 0, "skip_special_tokens": false});
        let (status, answer) = post(&url, "/v1/completions", &body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["text"], json!(want), "{name}");
        assert_eq!(answer["model"], json!(name));
    }
    let bad = ServeOptions {
        port: 0,
        lora_modules: vec![("x".into(), tmp.path().join("missing"))],
        ..ServeOptions::default()
    };
    let err = Server::start(base, tokenizer, bad).err().expect("refused");
    assert!(matches!(&err, resa_serve::Error::Adapter { name, .. } if name == "x"), "{err}");
    assert!(err.to_string().contains("adapter_config.json"), "{err}");
}

#[test]
fn with_an_api_key_every_route_but_health_needs_it() {
    let (m, t) = model();
    let opts = ServeOptions {
        port: 0,
        served_model_name: "toy".into(),
        api_key: Some("s3cret-key".into()),
        ..ServeOptions::default()
    };
    let server = Server::start(m, t, opts).expect("starts");
    let url = format!("http://{}", server.addr());
    let body = json!({"model": "toy", "prompt": "Q", "max_tokens": 2, "temperature": 0}).to_string();
    let status = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, r)) => {
            let v: Value = serde_json::from_str(&r.into_string().expect("text")).expect("json");
            if code == 401 {
                assert_eq!(v["error"]["type"], "AuthenticationError", "{v}");
                assert_eq!(v["error"]["code"], 401, "{v}");
            }
            code
        }
        Err(e) => panic!("{e}"),
    };
    let completions = format!("{url}/v1/completions");
    for auth in [None, Some("Bearer wrong"), Some("Bearer s3cret-ke"), Some("Bearer s3cret-key2"), Some("s3cret-key")] {
        let mut req = ureq::post(&completions);
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        assert_eq!(status(req.send_string(&body)), 401, "{auth:?}");
        let mut req = ureq::get(&format!("{url}/v1/models"));
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        assert_eq!(status(req.call()), 401, "{auth:?}");
    }
    assert_eq!(status(ureq::get(&format!("{url}/v2/nothing")).call()), 401, "unknown routes too");
    assert_eq!(status(ureq::get(&format!("{url}/health")).call()), 200, "/health is open");
    let ok = ureq::post(&completions).set("Authorization", "Bearer s3cret-key").send_string(&body);
    assert_eq!(status(ok), 200);
    let ok = ureq::get(&format!("{url}/v1/models")).set("Authorization", "Bearer s3cret-key").call();
    assert_eq!(status(ok), 200);
    server.shutdown().expect("shuts down");
}

/// Sends a request for 256 choices of up to 60 tokens and leaves its answer unread: with
/// one sequence decoded at a time, they keep the model busy for seconds. Dropping the
/// stream hangs up.
fn queue_256_sequences(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let body = json!({"model": "toy", "prompt": [1, 20], "n": 256, "max_tokens": 60, "seed": 1}).to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    stream
}

#[test]
fn requests_beyond_the_queue_bound_are_refused_before_any_work() {
    let (m, t) = model();
    let opts = ServeOptions {
        port: 0,
        served_model_name: "toy".into(),
        max_batch: 1,
        max_queued: 256,
        ..ServeOptions::default()
    };
    let server = Server::start(m, t, opts).expect("starts");
    let url = format!("http://{}", server.addr());
    // More than the server ever queues: a client error.
    let (status, answer) =
        post(&url, "/v1/completions", &json!({"model": "toy", "prompt": "Q", "n": 257, "max_tokens": 2}));
    assert_eq!(status, 400, "{answer}");
    // A full queue (256 sequences of up to 60 tokens, one at a time): busy, retry later.
    let stream = queue_256_sequences(server.addr());
    let started = std::time::Instant::now();
    while server.stats().pending < 256 && started.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (status, answer) =
        post(&url, "/v1/completions", &json!({"model": "toy", "prompt": "Q", "n": 1, "max_tokens": 2}));
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["type"], "ServiceUnavailableError", "{answer}");
    assert!(answer["error"]["message"].as_str().expect("message").contains("at most 256"), "{answer}");
    drop(stream);
    while server.stats().pending > 0 && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (status, answer) =
        post(&url, "/v1/completions", &json!({"model": "toy", "prompt": "Q", "n": 4, "max_tokens": 2}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.stats().pending, 0, "a finished request leaves the count");
    server.shutdown().expect("shuts down");
}

#[test]
fn a_client_that_goes_away_ends_its_sequences() {
    let (m, t) = model();
    // One sequence at a time: 256 choices of up to 60 tokens keep the model busy for seconds.
    let opts = ServeOptions { port: 0, served_model_name: "toy".into(), max_batch: 1, ..ServeOptions::default() };
    let server = Server::start(m, t, opts).expect("starts");
    let addr = server.addr();
    let stream = queue_256_sequences(addr);
    let started = std::time::Instant::now();
    while server.stats().pending == 0 && started.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.stats().pending, 256);
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(stream);
    while (server.stats().pending > 0 || server.stats().cancelled == 0) && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stats = server.stats();
    eprintln!("a client went away: {} of 256 sequences ended early", stats.cancelled);
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(stats.cancelled >= 128, "most of the 256 sequences were still waiting: {stats:?}");
    // The model is free again: a request right after is answered at once.
    let url = format!("http://{addr}");
    let t0 = std::time::Instant::now();
    let (status, _) = post(&url, "/v1/completions", &json!({"model": "toy", "prompt": "Q", "max_tokens": 2}));
    assert_eq!(status, 200);
    assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
    server.shutdown().expect("shuts down");
}

mod bodies {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value a client could send in a field: nulls, booleans, numbers of every
    /// size and sign, strings, small lists and objects.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[ -~]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A body with the fields the endpoints read, each either a plausible value or any JSON.
    fn body() -> impl Strategy<Value = Value> {
        let keys = [
            "model",
            "prompt",
            "messages",
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "n",
            "seed",
            "stop_token_ids",
            "skip_special_tokens",
            "add_special_tokens",
            "stream",
            "stop",
        ];
        let plausible = prop_oneof![
            Just(json!("toy")),
            Just(json!("Q: 1+1?")),
            Just(json!([1, 2, 3])),
            Just(json!([{"role": "user", "content": "Q"}])),
            (0u64..6).prop_map(|n| json!(n)),
            (0.0f64..1.5).prop_map(|f| json!(f)),
        ];
        prop::collection::vec(prop_oneof![plausible, any_json()], keys.len()).prop_map(move |values| {
            Value::Object(
                keys.iter().zip(values).filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.to_string(), v)).collect(),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_body_gets_an_answer_or_an_openai_error_never_a_failure(body in body(), chat in any::<bool>()) {
            static SERVER: std::sync::OnceLock<(Server, String)> = std::sync::OnceLock::new();
            let (_, url) = SERVER.get_or_init(|| {
                let (server, url, _, _) = start();
                (server, url)
            });
            let path = if chat { "/v1/chat/completions" } else { "/v1/completions" };
            let (status, answer) = post(url, path, &body);
            prop_assert!(matches!(status, 200 | 400 | 404), "{} → {}: {}", body, status, answer);
            if status == 200 {
                prop_assert!(answer["choices"].as_array().is_some_and(|c| !c.is_empty()), "{}", answer);
            } else {
                prop_assert!(answer["error"]["message"].is_string(), "{}", answer);
                prop_assert_eq!(&answer["error"]["code"], &json!(status));
            }
        }
    }
}
