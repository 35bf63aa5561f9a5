//! The toy reasoning world: determinism, correct answers (checked by an independent
//! evaluator), disjoint splits, and its tokenizer and chat template.

use std::collections::HashSet;

use resa_data::{ChunkOptions, Template, chunk_texts};
use resa_toy::world::{self, Split, ToyWorld};

/// Evaluates `+ - *` with ordinary precedence and parentheses (recursive descent),
/// independently of the generator.
fn eval(s: &str) -> i64 {
    fn expr(t: &[u8], i: &mut usize) -> i64 {
        let mut v = term(t, i);
        while *i < t.len() && (t[*i] == b'+' || t[*i] == b'-') {
            let op = t[*i];
            *i += 1;
            let r = term(t, i);
            v = if op == b'+' { v + r } else { v - r };
        }
        v
    }
    fn term(t: &[u8], i: &mut usize) -> i64 {
        let mut v = atom(t, i);
        while *i < t.len() && t[*i] == b'*' {
            *i += 1;
            v *= atom(t, i);
        }
        v
    }
    fn atom(t: &[u8], i: &mut usize) -> i64 {
        if t[*i] == b'(' {
            *i += 1;
            let v = expr(t, i);
            assert_eq!(t[*i], b')');
            *i += 1;
            return v;
        }
        let start = *i;
        while *i < t.len() && t[*i].is_ascii_digit() {
            *i += 1;
        }
        std::str::from_utf8(&t[start..*i]).expect("utf8").parse().expect("number")
    }
    let mut i = 0;
    let v = expr(s.as_bytes(), &mut i);
    assert_eq!(i, s.len(), "trailing input in {s}");
    v
}

#[test]
fn answers_and_steps_are_right() {
    for p in ToyWorld::with_seed(3).problems(Split::Train, 500) {
        assert_eq!(eval(&p.expression), p.answer, "{}", p.expression);
        let last = p.steps.last().expect("steps");
        assert!(last.ends_with(&format!("={}", p.answer)), "{last}");
        assert!(p.question == format!("What is {}?", p.expression));
    }
}

#[test]
fn generation_is_deterministic_and_seeded() {
    let a = ToyWorld::with_seed(1).problems(Split::Train, 50);
    assert_eq!(a, ToyWorld::with_seed(1).problems(Split::Train, 50));
    assert_ne!(a, ToyWorld::with_seed(2).problems(Split::Train, 50));
    // Asking for more extends the same list.
    assert_eq!(&ToyWorld::with_seed(1).problems(Split::Train, 80)[..50], &a[..]);
}

#[test]
fn splits_never_share_a_problem() {
    let w = ToyWorld::with_seed(9);
    let sets: Vec<HashSet<String>> = [Split::Train, Split::Validation, Split::Test]
        .into_iter()
        .map(|s| w.problems(s, 400).into_iter().map(|p| p.expression).collect())
        .collect();
    assert!(sets.iter().all(|s| s.len() == 400), "distinct problems within a split");
    assert!(sets[0].is_disjoint(&sets[1]) && sets[0].is_disjoint(&sets[2]) && sets[1].is_disjoint(&sets[2]));
    // Across seeds, too: the split is a function of the problem.
    let other: HashSet<String> =
        ToyWorld::with_seed(10).problems(Split::Test, 400).into_iter().map(|p| p.expression).collect();
    assert!(other.is_disjoint(&sets[0]));
}

#[test]
fn renderings() {
    let p = &ToyWorld::with_seed(0).problems(Split::Test, 1)[0];
    let a = p.answer;
    assert_eq!(p.cot_free_text(), format!("Q: {}\nA: <think> {a} </think> <answer> {a} </answer>", p.question));
    assert!(p.cot_text().contains(&format!("<think> {} </think>", p.steps.join(" "))));
    // The toy templates give the chain-of-thought and the CoT-free renderings.
    assert_eq!(Template::custom(world::TOY_COT_TEMPLATE).expect("template").render(&p.to_row()), p.cot_text());
    assert_eq!(Template::custom(world::TOY_TEMPLATE).expect("template").render(&p.to_row()), p.cot_free_text());
}

#[test]
fn tokenizer_round_trips_and_keeps_tags_whole() {
    let tok = world::tokenizer().expect("tokenizer");
    assert_eq!(tok.get_vocab_size(true), world::vocab_size());
    let id = |t: &str| tok.token_to_id(t).expect("token");
    assert_eq!([id(world::PAD), id(world::BOS), id(world::EOS), id("<think>"), id("</think>")], [0, 1, 2, 4, 5]);
    for p in ToyWorld::with_seed(4).problems(Split::Validation, 50) {
        let text = p.cot_text();
        let enc = tok.encode(text.as_str(), true).expect("encode");
        let ids = enc.get_ids();
        assert_eq!(ids[0], 1, "BOS first");
        assert!(ids.contains(&4) && ids.contains(&5) && ids.contains(&6) && ids.contains(&7));
        assert!(!ids.contains(&id(world::UNK)));
        assert_eq!(tok.decode(&ids[1..], false).expect("decode"), text);
    }
}

#[test]
fn tokenizer_files_load_with_the_chat_template() {
    let dir = tempfile::tempdir().expect("tmp");
    world::write_tokenizer(dir.path()).expect("write");
    let tok = resa_qwen2::Tokenizer::from_dir(dir.path()).expect("load");
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_id(), Some(2));
    let text = tok.apply_chat_template(&[resa_qwen2::ChatMessage::user("What is 2+3?")], true).expect("chat template");
    assert_eq!(text, "<|bos|>Q: What is 2+3?\nA: <think>");
}

#[test]
fn toy_data_chunks_like_real_data() {
    let tok = world::tokenizer().expect("tokenizer");
    let texts: Vec<String> =
        ToyWorld::default().problems(Split::Train, 300).iter().map(|p| p.cot_free_text()).collect();
    let opts = ChunkOptions { chunk_len: 64, eos_token: world::EOS.into(), ..ChunkOptions::default() };
    let chunks = chunk_texts(&tok, &texts, &opts).expect("chunks");
    assert!(chunks.stats.chunks > 50);
    assert!(chunks.chunks.iter().all(|c| c.len() == 64 && c[0] == 1));
    assert_eq!(chunks.chunks[0][1], 2, "the stream starts with EOS");
}

#[test]
fn write_splits_writes_three_jsonl_files() {
    let dir = tempfile::tempdir().expect("tmp");
    ToyWorld::default().write_splits(dir.path(), [20, 5, 5]).expect("write");
    let (rows, _) =
        resa_data::read_qa(dir.path().join("train.jsonl"), &resa_data::ReadOptions::strict()).expect("read");
    assert_eq!(rows.len(), 20);
    let (test, _) = resa_data::read_qa(dir.path().join("test.jsonl"), &resa_data::ReadOptions::strict()).expect("read");
    assert_eq!(test.len(), 5);
}

#[test]
fn the_elicit_world_has_two_or_three_steps_within_sixty_and_its_own_task() {
    use resa_toy::world::World;
    let w = World::Elicit.generator(5);
    for p in w.problems(Split::Train, 400) {
        assert!((2..=3).contains(&p.steps.len()), "{p:?}");
        assert_eq!(eval(&p.expression), p.answer, "{p:?}");
        for step in &p.steps {
            let value: i64 = step.rsplit('=').next().expect("=").parse().expect("value");
            assert!(value.abs() <= 60, "{p:?}");
        }
    }
    let task = World::Elicit.test_task(0, 30);
    assert_eq!(task.name, "toy-elicit");
    assert_eq!(World::Arith.test_task(0, 30).name, "toy");
    let train: HashSet<String> =
        World::Elicit.generator(0).problems(Split::Train, 2000).into_iter().map(|p| p.question).collect();
    assert!(task.items.iter().all(|i| !train.contains(&i.message)), "a test problem in the training split");
    assert_eq!("elicit".parse::<World>().expect("parse"), World::Elicit);
    let err = "nowhere".parse::<World>().expect_err("unknown world").to_string();
    assert!(err.contains("nowhere") && err.contains("arith, elicit"), "{err}");
}

#[test]
fn the_feature_prompt_holds_the_think_markers_among_toy_text() {
    use resa_toy::world::World;
    for w in World::ALL {
        let prompt = w.feature_prompt();
        assert_eq!(prompt.matches("<think>").count(), 2, "{prompt}");
        assert_eq!(prompt.matches("</think>").count(), 2, "{prompt}");
        assert!(prompt.starts_with("Q: What is "), "{prompt}");
    }
}

#[test]
fn a_completion_reasons_when_its_think_block_holds_a_step() {
    assert!(world::reasons(" 7+5=12 12*3=36 </think> <answer> 36 </answer>"));
    assert!(!world::reasons(" 36 </think> <answer> 36 </answer>"));
    assert!(!world::reasons(" 36 </think> <answer> 1+2=3 </answer>"), "a step after </think> is not reasoning");
    assert!(world::reasons(" 7+5=12 12*3="), "cut off while reasoning");
}

#[test]
fn the_mixture_skips_the_reasoning_in_about_its_share_of_the_solutions() {
    use resa_toy::world::World;
    let tokenizer = tokenizer_dir();
    let texts = resa_toy::model::training_texts(&tokenizer, World::Elicit, 0, 2000, 0.7).expect("texts");
    let direct = texts.iter().filter(|t| !world::reasons(t.split("A: <think>").nth(1).expect("assistant"))).count();
    let share = direct as f64 / texts.len() as f64;
    assert!((share - 0.7).abs() < 0.04, "{share}");
    let all_cot = resa_toy::model::training_texts(&tokenizer, World::Elicit, 0, 200, 0.0).expect("texts");
    assert!(all_cot.iter().all(|t| world::reasons(t.split("A: <think>").nth(1).expect("assistant"))));
}

fn tokenizer_dir() -> resa_qwen2::Tokenizer {
    let dir = tempfile::tempdir().expect("tmp");
    world::write_tokenizer(dir.path()).expect("tokenizer");
    resa_qwen2::Tokenizer::from_dir(dir.path()).expect("load")
}
