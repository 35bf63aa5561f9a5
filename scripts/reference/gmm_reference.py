"""Reference values for resa-features' weighted Gaussian mixture.

scikit-learn's GaussianMixture has no sample weights, so each layer index is repeated as
many times as its (integer) weight, which is what a weighted fit means. Writes
crates/resa-features/tests/fixtures/gmm.json: for each case the layers, weights and the
fitted components sorted by mean.

    pip install -r scripts/reference/requirements.txt
    python scripts/reference/gmm_reference.py
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/resa-features/tests/fixtures/gmm.json"


def bump(layers, centre, height, width):
    return height * np.exp(-((layers - centre) ** 2) / (2 * width**2))


def cases():
    layers = np.arange(1, 27)  # layers.1 .. layers.26, as the paper's sweep
    # Shaped like the paper's Figure 3 (means near 4.9 / 14.5 / 22.7).
    paper = np.round(bump(layers, 4.9, 40, 2.0) + bump(layers, 14.5, 25, 2.5) + bump(layers, 22.7, 18, 1.8))
    yield "paper_like_counts", layers, paper, 3
    # Scores (percent, one decimal) scaled by 10 to integers.
    rng = np.random.default_rng(0)
    scores = np.round(10 * (40 + bump(layers, 6, 8, 3) + bump(layers, 16, 6, 3) + rng.uniform(0, 1, len(layers))))
    yield "scores_x10", layers, scores, 3
    small = np.array([0, 1, 2, 3, 4, 5])
    yield "toy_two", small, np.array([1, 8, 2, 0, 6, 7]), 2
    yield "uneven", np.arange(0, 12), np.array([0, 3, 9, 4, 0, 0, 1, 0, 12, 15, 2, 0]), 3


def main():
    out = []
    for name, layers, weights, k in cases():
        weights = weights.astype(int)
        x = np.repeat(layers.astype(float), weights).reshape(-1, 1)
        g = GaussianMixture(n_components=k, n_init=10, random_state=0, tol=1e-3, reg_covar=1e-6, max_iter=100).fit(x)
        order = np.argsort(g.means_.ravel())
        out.append(
            {
                "name": name,
                "components": k,
                "layers": layers.tolist(),
                "weights": weights.tolist(),
                "means": g.means_.ravel()[order].tolist(),
                "stds": np.sqrt(g.covariances_.ravel()[order]).tolist(),
                "mixing": g.weights_[order].tolist(),
                "lower_bound": float(g.lower_bound_),
            }
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"sklearn": sklearn.__version__, "cases": out}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
