//! The weighted mixture against scikit-learn's GaussianMixture on the expanded sample
//! (`scripts/reference/gmm_reference.py` wrote the fixture): means within 0.05 layers,
//! standard deviations and mixing weights close, same mean log-likelihood.

use resa_features::{GmmOptions, fit_gmm};

#[test]
fn matches_scikit_learn() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gmm.json")).expect("fixture");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = v["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let floats = |key: &str| -> Vec<f64> {
            case[key].as_array().expect(key).iter().map(|x| x.as_f64().expect("number")).collect()
        };
        let layers = floats("layers");
        let weights = floats("weights");
        let k = case["components"].as_u64().expect("k") as usize;
        let g = fit_gmm(&layers, &weights, &GmmOptions { components: k, ..GmmOptions::default() }).expect("fits");
        for (i, c) in g.components.iter().enumerate() {
            let (m, s, w) = (floats("means")[i], floats("stds")[i], floats("mixing")[i]);
            assert!((c.mean - m).abs() < 0.05, "{name} component {i}: mean {} vs sklearn {m}", c.mean);
            assert!((c.std - s).abs() < 0.05, "{name} component {i}: sd {} vs sklearn {s}", c.std);
            assert!((c.weight - w).abs() < 0.01, "{name} component {i}: weight {} vs sklearn {w}", c.weight);
        }
        let lb = case["lower_bound"].as_f64().expect("lower_bound");
        assert!((g.mean_log_likelihood - lb).abs() < 1e-3, "{name}: {} vs {lb}", g.mean_log_likelihood);
    }
}
