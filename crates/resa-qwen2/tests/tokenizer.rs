//! The real DeepSeek-R1-Distill-Qwen tokenizer and chat template from `../shared/data`
//! (skipped, with a message, where that folder is absent; `RESA_SHARED_DATA` overrides it).

use std::path::PathBuf;

use resa_qwen2::{ChatMessage, Tokenizer};

fn r1_tokenizer() -> Option<Tokenizer> {
    let root = std::env::var_os("RESA_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = root.join("tokenizers/deepseek-r1-distill-qwen");
    if !dir.join("tokenizer.json").is_file() {
        eprintln!("SKIPPED: {} not found (set RESA_SHARED_DATA to the shared data folder)", dir.display());
        return None;
    }
    Some(Tokenizer::from_dir(&dir).expect("loads the R1-Distill tokenizer"))
}

#[test]
fn encodes_like_transformers() {
    let Some(tok) = r1_tokenizer() else { return };
    assert_eq!(tok.vocab_size(), 151_665);
    assert_eq!(tok.encode("Hello world", true).expect("encode"), vec![151646, 9707, 1879]);
    assert_eq!(tok.encode("Hello world", false).expect("encode"), vec![9707, 1879]);
    assert_eq!(tok.token_to_id("<think>"), Some(151648));
    assert_eq!(tok.token_to_id("</think>"), Some(151649));
    assert_eq!(tok.eos_token_id(), Some(151643));
    assert_eq!(tok.bos_token_id(), Some(151646));
    let ids = tok.encode("a <think> b </think>", false).expect("encode");
    assert!(ids.contains(&151648) && ids.contains(&151649), "{ids:?}");
    let text = "Find $x$ if $2x + 3 = 7$.";
    let ids = tok.encode(text, true).expect("encode");
    assert_eq!(tok.decode(&ids, true).expect("decode"), text);
}

#[test]
fn chat_template_matches_transformers() {
    let Some(tok) = r1_tokenizer() else { return };
    let messages = [ChatMessage::user("What is 1+1?")];
    let text = tok.apply_chat_template(&messages, true).expect("render");
    assert_eq!(text, "<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n");
    assert_eq!(
        tok.encode_chat(&messages, true).expect("encode"),
        vec![151646, 151644, 3838, 374, 220, 16, 10, 16, 30, 151645, 151648, 198]
    );
    // System prompt first; assistant history stripped up to the last </think>.
    let convo = [
        ChatMessage::system("SYS"),
        ChatMessage::user("q1"),
        ChatMessage::assistant("<think>\nhidden\n</think>\n\nanswer1"),
        ChatMessage::user("q2"),
    ];
    let text = tok.apply_chat_template(&convo, false).expect("render");
    assert_eq!(
        text,
        "<｜begin▁of▁sentence｜>SYS<｜User｜>q1<｜Assistant｜>\n\nanswer1<｜end▁of▁sentence｜><｜User｜>q2"
    );
}

#[test]
fn generate_text_decodes_its_ids() {
    use burn::backend::Flex;
    use burn::tensor::DType;
    use resa_qwen2::{GenerationConfig, Qwen2Config, Qwen2ForCausalLM, generate_text};
    let Some(tok) = r1_tokenizer() else { return };
    let cfg = Qwen2Config {
        vocab_size: tok.vocab_size(),
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        head_dim: 8,
        ..Qwen2Config::tiny()
    };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 1, &Default::default(), DType::F32);
    let out = generate_text(&model, &tok, &["What is 1+1?", "Hi"], true, &GenerationConfig::greedy(4, vec![]))
        .expect("generate");
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(!o.generated.ids.is_empty() && o.generated.ids.len() <= 4);
        assert_eq!(o.text, tok.decode(&o.generated.ids, true).expect("decode"));
    }
}
