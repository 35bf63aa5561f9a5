//! A sequence that stops leaves the batch (its cache rows are dropped): the others continue
//! exactly as they do decoded alone, and sampled rows keep their own samplers. (On flex the
//! two halves of a batch decode at once: an odd batch splits unevenly.)

use burn::backend::Flex;
use burn::tensor::DType;
use resa_qwen2::{FinishReason, GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Sampling, generate_seeded};

#[test]
fn rows_that_stop_leave_the_batch_and_the_rest_decode_as_alone() {
    let cfg = Qwen2Config { vocab_size: 64, ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 5, &Default::default(), DType::F32);
    let prompts: Vec<Vec<u32>> =
        vec![vec![3, 4, 5], vec![7, 8, 9, 10, 11], vec![12, 13], vec![20, 21, 22, 23], vec![30, 31, 32, 33, 34, 35]];
    let seeds = [1u64, 2, 3, 4, 5];
    for sampling in [Sampling::Greedy, Sampling::Sample { temperature: 1.0, top_p: 1.0, top_k: None }] {
        let free = GenerationConfig { sampling, ..GenerationConfig::greedy(12, vec![]) };
        let long = generate_seeded(&model, &prompts, &seeds, &free).expect("generate");
        // Stop on the third token of row 0: row 0 leaves early, the others may too.
        let stop = long[0].ids[2];
        let cfg = GenerationConfig { stop_token_ids: vec![stop], pad_token_id: 0, ..free.clone() };
        let batched = generate_seeded(&model, &prompts, &seeds, &cfg).expect("generate");
        assert_eq!(batched[0].finish_reason, FinishReason::Stop(stop));
        assert!(batched[0].ids.len() <= 3);
        for (i, p) in prompts.iter().enumerate() {
            let alone = generate_seeded(&model, std::slice::from_ref(p), &seeds[i..=i], &cfg).expect("alone");
            assert_eq!(batched[i], alone[0], "row {i} ({sampling:?})");
        }
        assert!(batched.iter().any(|g| g.ids.len() > batched[0].ids.len()), "some row outlives row 0: {batched:?}");
    }
}

#[test]
fn sequences_joining_a_batch_mid_way_decode_as_alone() {
    use resa_qwen2::{BatchDecoder, DecodeRequest};
    let cfg = Qwen2Config { vocab_size: 64, ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 9, &Default::default(), DType::F32);
    let sample = Sampling::Sample { temperature: 0.9, top_p: 0.95, top_k: None };
    let reqs: Vec<DecodeRequest> = [
        (vec![3u32, 4, 5], 10usize, Sampling::Greedy),
        (vec![7, 8, 9, 10, 11, 12, 13, 14], 6, sample),
        (vec![12, 13], 9, sample),
        (vec![20, 21, 22, 23], 1, Sampling::Greedy),
        (vec![30; 11], 7, Sampling::Greedy),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (prompt, max, sampling))| DecodeRequest {
        prompt,
        seed: 100 + i as u64,
        cfg: GenerationConfig { sampling, ..GenerationConfig::greedy(max, vec![5]) },
    })
    .collect();
    let alone: Vec<_> = reqs
        .iter()
        .map(|r| generate_seeded(&model, std::slice::from_ref(&r.prompt), &[r.seed], &r.cfg).expect("alone").remove(0))
        .collect();
    // Request i joins before step 2·i: shorter and longer prompts than the batch's history.
    let mut decoder = BatchDecoder::<Flex, usize>::new();
    let mut got = vec![None; reqs.len()];
    let mut next = 0;
    for step in 0.. {
        if next < reqs.len() && step == 2 * next {
            if let Some((i, g)) = decoder.add(&model, next, reqs[next].clone()).map_err(|(_, e)| e).expect("add") {
                got[i] = Some(g);
            }
            next += 1;
        }
        for (i, g) in decoder.step(&model).expect("step") {
            got[i] = Some(g);
        }
        if next == reqs.len() && decoder.is_empty() {
            break;
        }
        assert!(step < 100, "the batch never drains");
    }
    for (i, (g, a)) in got.iter().zip(&alone).enumerate() {
        assert_eq!(g.as_ref(), Some(a), "request {i}");
    }
}
