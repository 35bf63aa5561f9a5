//! Building a [`Qwen2ForCausalLM`] from a Hugging Face checkpoint folder or from random
//! weights, and saving one as a Hugging Face checkpoint folder.

use std::path::Path;

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;

use crate::config::Qwen2Config;
use crate::error::{Error, Result};
use crate::model::{Attention, DecoderLayer, Embedding, Linear, Mlp, Qwen2ForCausalLM, Qwen2Model, RmsNorm};
use crate::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, transpose, write_safetensors};
use resa_publish::write_atomic;

/// Values per piece of a random tensor drawn on one thread.
const RANDOM_PIECE: usize = 1 << 16;

/// One random weight from two uniforms (Box-Muller): normal with std 0.02, or 1 + 0.1 · normal
/// for a norm's weight.
fn random_weight(rng: &mut impl Rng, norm: bool) -> f32 {
    let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random::<f32>());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
    if norm { 1.0 + 0.1 * z } else { 0.02 * z }
}

/// Every tensor key of a Qwen2 checkpoint with this config, with its shape.
pub fn checkpoint_keys(cfg: &Qwen2Config) -> Vec<(String, Vec<usize>)> {
    let (hd, it) = (cfg.hidden_size, cfg.intermediate_size);
    let (qd, kvd) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    let mut keys = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab_size, hd])];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        keys.extend([
            (format!("{p}.self_attn.q_proj.weight"), vec![qd, hd]),
            (format!("{p}.self_attn.q_proj.bias"), vec![qd]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kvd, hd]),
            (format!("{p}.self_attn.k_proj.bias"), vec![kvd]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kvd, hd]),
            (format!("{p}.self_attn.v_proj.bias"), vec![kvd]),
            (format!("{p}.self_attn.o_proj.weight"), vec![hd, qd]),
            (format!("{p}.mlp.gate_proj.weight"), vec![it, hd]),
            (format!("{p}.mlp.up_proj.weight"), vec![it, hd]),
            (format!("{p}.mlp.down_proj.weight"), vec![hd, it]),
            (format!("{p}.input_layernorm.weight"), vec![hd]),
            (format!("{p}.post_attention_layernorm.weight"), vec![hd]),
        ]);
    }
    keys.push(("model.norm.weight".to_string(), vec![hd]));
    if !cfg.tie_word_embeddings {
        keys.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, hd]));
    }
    keys
}

/// Supplies the values of the tensor `key` with the given shape.
type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

/// Assembles a model, asking `get(key, shape)` for each tensor's values.
fn build<B: Backend>(
    cfg: &Qwen2Config,
    device: &B::Device,
    dtype: DType,
    get: &mut TensorSource<'_>,
) -> Result<Qwen2ForCausalLM<B>> {
    // Linear weights: checkpoint `[out, in]` transposed to `[in, out]` (see `Linear`).
    let mut t2 = |key: &str, shape: [usize; 2]| -> Result<Param<Tensor<B, 2>>> {
        let v = get(key, &shape)?;
        let (data, shape) = if key.ends_with("embed_tokens.weight") {
            (v, shape)
        } else {
            (transpose(&v, shape[0], shape[1]), [shape[1], shape[0]])
        };
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), (device, dtype))))
    };
    let (hd, it) = (cfg.hidden_size, cfg.intermediate_size);
    let (qd, kvd) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    let embed = t2("model.embed_tokens.weight", [cfg.vocab_size, hd])?;
    let mut weights2 = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        weights2.push([
            t2(&format!("{p}.self_attn.q_proj.weight"), [qd, hd])?,
            t2(&format!("{p}.self_attn.k_proj.weight"), [kvd, hd])?,
            t2(&format!("{p}.self_attn.v_proj.weight"), [kvd, hd])?,
            t2(&format!("{p}.self_attn.o_proj.weight"), [hd, qd])?,
            t2(&format!("{p}.mlp.gate_proj.weight"), [it, hd])?,
            t2(&format!("{p}.mlp.up_proj.weight"), [it, hd])?,
            t2(&format!("{p}.mlp.down_proj.weight"), [hd, it])?,
        ]);
    }
    let lm_head = if cfg.tie_word_embeddings {
        None
    } else {
        Some(Linear::new(t2("lm_head.weight", [cfg.vocab_size, hd])?, None))
    };
    let mut t1 = |key: &str, n: usize| -> Result<Param<Tensor<B, 1>>> {
        let v = get(key, &[n])?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), (device, dtype))))
    };
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for (l, [q, k, v, o, g, u, d]) in weights2.into_iter().enumerate() {
        let p = format!("model.layers.{l}");
        let lin = |weight, bias| Linear::new(weight, bias);
        layers.push(DecoderLayer {
            self_attn: Attention {
                q_proj: lin(q, Some(t1(&format!("{p}.self_attn.q_proj.bias"), qd)?)),
                k_proj: lin(k, Some(t1(&format!("{p}.self_attn.k_proj.bias"), kvd)?)),
                v_proj: lin(v, Some(t1(&format!("{p}.self_attn.v_proj.bias"), kvd)?)),
                o_proj: lin(o, None),
                num_heads: cfg.num_attention_heads,
                num_kv_heads: cfg.num_key_value_heads,
                head_dim: cfg.head_dim,
            },
            mlp: Mlp { gate_proj: lin(g, None), up_proj: lin(u, None), down_proj: lin(d, None) },
            input_layernorm: RmsNorm { weight: t1(&format!("{p}.input_layernorm.weight"), hd)?, eps: cfg.rms_norm_eps },
            post_attention_layernorm: RmsNorm {
                weight: t1(&format!("{p}.post_attention_layernorm.weight"), hd)?,
                eps: cfg.rms_norm_eps,
            },
        });
    }
    let norm = RmsNorm { weight: t1("model.norm.weight", hd)?, eps: cfg.rms_norm_eps };
    Ok(Qwen2ForCausalLM {
        model: Qwen2Model { embed_tokens: Embedding { weight: embed }, layers, norm },
        lm_head,
        config: cfg.clone(),
    })
}

/// Whether a checkpoint key is a buffer older transformers versions saved and Qwen2 recomputes.
fn is_ignorable(key: &str) -> bool {
    key.ends_with(".rotary_emb.inv_freq")
}

impl<B: Backend> Qwen2ForCausalLM<B> {
    /// Loads a Hugging Face model folder (`config.json` plus `model.safetensors` or a
    /// sharded `model.safetensors.index.json`), converting the stored F32/F16/BF16 weights to
    /// the compute `dtype` (BF16 and F16 widen to F32 exactly).
    ///
    /// The head is tied when `tie_word_embeddings` is true or `lm_head.weight` is absent.
    /// Missing, unexpected and mis-shaped tensors are errors naming the key, and so is a NaN
    /// or an infinity in any weight ([`Error::NonFinite`]; the values pass through the host
    /// on their way to the device anyway, so the check costs a scan, not a read).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device, dtype: DType) -> Result<Self> {
        let dir = dir.as_ref();
        let mut cfg = Qwen2Config::from_file(dir.join("config.json"))?;
        let reader = SafetensorsReader::open_dir(dir)?;
        if !cfg.tie_word_embeddings && !reader.contains("lm_head.weight") {
            tracing::debug!("no lm_head.weight in {}: tying the head to the embeddings", dir.display());
            cfg.tie_word_embeddings = true;
        }
        let expected = checkpoint_keys(&cfg);
        let known: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
        for key in reader.keys() {
            let tied_head = key == "lm_head.weight" && cfg.tie_word_embeddings;
            if !known.contains(key) && !tied_head && !is_ignorable(key) {
                return Err(Error::UnexpectedTensor { key: key.to_string(), path: dir.to_path_buf() });
            }
        }
        // Check every key and shape before reading any data.
        for (key, shape) in &expected {
            match reader.shape(key) {
                None => return Err(Error::MissingTensor { key: key.clone(), path: dir.to_path_buf() }),
                Some(found) if found != shape.as_slice() => {
                    return Err(Error::ShapeMismatch {
                        key: key.clone(),
                        expected: shape.clone(),
                        found: found.to_vec(),
                    });
                }
                Some(_) => {}
            }
        }
        tracing::info!(path = %dir.display(), layers = cfg.num_hidden_layers, ?dtype, "loading Qwen2 checkpoint");
        build(&cfg, device, dtype, &mut |key, shape| reader.read_f32_finite(key, shape))
    }

    /// A model with random weights (normal, std 0.02, as transformers initialises Qwen2;
    /// norm weights 1 + small noise so that norms are exercised), drawn on the host from
    /// `seed`, so it is identical on every backend.
    pub fn random(cfg: &Qwen2Config, seed: u64, device: &B::Device, dtype: DType) -> Self {
        // One ChaCha12 stream (`StdRng`'s generator, seeded the same way), two 32-bit words per
        // value, so each piece of a tensor seeks to its own words and the pieces are drawn on
        // all threads with the values a single pass would draw.
        let mut next = 0u128;
        let mut get = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let n: usize = shape.iter().product();
            let norm = key.ends_with("layernorm.weight") || key == "model.norm.weight";
            let start = next;
            next += 2 * n as u128;
            let mut out = vec![0.0f32; n];
            out.par_chunks_mut(RANDOM_PIECE).enumerate().for_each(|(i, piece)| {
                let mut rng = ChaCha12Rng::seed_from_u64(seed);
                rng.set_word_pos(start + 2 * (i * RANDOM_PIECE) as u128);
                for v in piece {
                    *v = random_weight(&mut rng, norm);
                }
            });
            Ok(out)
        };
        match build(cfg, device, dtype, &mut get) {
            Ok(m) => m,
            Err(_) => unreachable!("random weights cannot fail to build"),
        }
    }

    /// Every tensor with its checkpoint key, as `f32` host data and shape.
    pub fn named_tensors(&self) -> Vec<(String, Vec<f32>, Vec<usize>)> {
        fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<f32>, Vec<usize>) {
            let shape = t.dims().to_vec();
            let data = t.into_data();
            (data.iter::<f32>().collect(), shape)
        }
        let mut out = Vec::new();
        let mut push = |key: String, (v, s): (Vec<f32>, Vec<usize>)| out.push((key, v, s));
        push("model.embed_tokens.weight".into(), host(self.model.embed_tokens.weight.val()));
        for (l, layer) in self.model.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let a = &layer.self_attn;
            for (name, lin) in
                [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)]
            {
                push(format!("{p}.self_attn.{name}.weight"), host(lin.weight.val().transpose()));
                if let Some(b) = &lin.bias {
                    push(format!("{p}.self_attn.{name}.bias"), host(b.val()));
                }
            }
            let m = &layer.mlp;
            for (name, lin) in [("gate_proj", &m.gate_proj), ("up_proj", &m.up_proj), ("down_proj", &m.down_proj)] {
                push(format!("{p}.mlp.{name}.weight"), host(lin.weight.val().transpose()));
            }
            push(format!("{p}.input_layernorm.weight"), host(layer.input_layernorm.weight.val()));
            push(format!("{p}.post_attention_layernorm.weight"), host(layer.post_attention_layernorm.weight.val()));
        }
        push("model.norm.weight".into(), host(self.model.norm.weight.val()));
        if let Some(head) = &self.lm_head {
            push("lm_head.weight".into(), host(head.weight.val().transpose()));
        }
        out
    }

    /// Writes `config.json` and `model.safetensors` (weights stored as `dtype`) into `dir`,
    /// a folder transformers' `from_pretrained` loads. Each file is written atomically.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, dtype: StoredDtype) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut cfg = self.config.clone();
        cfg.torch_dtype = Some(
            match dtype {
                StoredDtype::BF16 => "bfloat16",
                StoredDtype::F16 => "float16",
                _ => "float32",
            }
            .into(),
        );
        let tensors: Vec<OwnedTensor> =
            self.named_tensors().into_iter().map(|(k, v, s)| OwnedTensor::from_f32(k, &v, s, dtype)).collect();
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(dir.join("model.safetensors"), &tensors, Some(meta))?;
        let json_err = |source| Error::Json { path: dir.join("config.json"), cause: source };
        let mut value = serde_json::to_value(cfg.to_hf()).map_err(json_err)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.retain(|_, v| !v.is_null());
        }
        let json = serde_json::to_string_pretty(&value).map_err(json_err)?;
        Ok(write_atomic(dir.join("config.json"), json.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;

    /// Drawn in pieces on all threads, the random weights are the values one pass of `StdRng`
    /// draws in the order the model is built (a tensor larger than a piece included).
    #[test]
    fn random_weights_in_pieces_equal_one_sequential_stream() {
        type B = burn::backend::Flex;
        let cfg = Qwen2Config { vocab_size: 1100, hidden_size: 128, ..Qwen2Config::tiny() };
        assert!(cfg.vocab_size * cfg.hidden_size > RANDOM_PIECE);
        let device = Default::default();
        let pieces = Qwen2ForCausalLM::<B>::random(&cfg, 7, &device, DType::F32).named_tensors();
        let mut rng = StdRng::seed_from_u64(7);
        let mut sequential = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let norm = key.ends_with("layernorm.weight") || key == "model.norm.weight";
            Ok((0..shape.iter().product::<usize>()).map(|_| random_weight(&mut rng, norm)).collect())
        };
        let one_pass = build::<B>(&cfg, &device, DType::F32, &mut sequential).expect("build").named_tensors();
        assert_eq!(pieces.len(), one_pass.len());
        for ((k, a, sa), (_, b, sb)) in pieces.iter().zip(&one_pass) {
            assert_eq!(sa, sb, "{k}");
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{k} differs");
        }
    }
}
