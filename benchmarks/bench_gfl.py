"""GFL on noisy masks: how well the learned features separate ground-truth objects and parts, with GFL and without.

For each mask-noise level a synthetic scene is generated (``clickgs synth``), and the feature stage is trained from
the scene's own .ply twice (GFL on and off, same seed and schedule). Per level (coarse = objects, fine = parts) it
prints, over random pairs of Gaussians:
  gap  = mean cos(same label) - mean cos(different label)   (higher is better; 2 is perfect)
  ARI  = adjusted Rand index of the model's candidate labels (GFL on) or of a k-means labelling with the true
         number of segments (both runs, for a like-for-like score) against the ground truth
and the time of one GFL update. Usage: python benchmarks/bench_gfl.py [--steps 600] [--noise 0 0.5 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_trainer_config  # noqa: E402

from clickgs_ns.method.gfl import GFLConfig  # noqa: E402
from clickgs_ns.synth import SynthConfig, generate_scene  # noqa: E402


def separation(features: torch.Tensor, labels: np.ndarray, pairs: int = 100_000, seed: int = 0) -> float:
    """Mean cosine of same-label pairs minus that of different-label pairs."""
    features = torch.nn.functional.normalize(features, dim=-1)
    labels = torch.from_numpy(labels).long()
    generator = torch.Generator().manual_seed(seed)
    i, j = (torch.randint(len(features), (pairs,), generator=generator) for _ in range(2))
    cosine = (features[i] * features[j]).sum(-1)
    same = labels[i] == labels[j]
    return float(cosine[same].mean() - cosine[~same].mean())


def kmeans_ari(features: torch.Tensor, labels: np.ndarray, seed: int = 0) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    unit = torch.nn.functional.normalize(features, dim=-1).numpy()
    k = len(np.unique(labels))
    predicted = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(unit)
    return float(adjusted_rand_score(labels, predicted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="feature-stage steps per run")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    args = parser.parse_args()
    print(f"# bench_gfl: torch {torch.__version__}, {torch.get_num_threads()} threads; feature stage {args.steps} "
          f"steps from the scene's .ply, GFL from step {args.steps // 2} every {args.steps // 6}")
    print(f"{'noise':>5} {'GFL':>4} | {'coarse gap':>10} {'coarse ARI':>10} | {'fine gap':>8} {'fine ARI':>8} | "
          f"{'cands c/f':>9} {'GFL update s':>12} {'train s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for noise in args.noise:
            scene = generate_scene(SynthConfig(mask_noise=noise, num_views=16, image_width=128, image_height=96,
                                               num_gaussians=3000), Path(tmp) / f"scene_{noise}")
            labels = np.load(scene.labels_path)
            for use_gfl in (False, True):
                gfl = GFLConfig(enabled=use_gfl, start_step=args.steps // 2, update_every=args.steps // 6)
                config = make_trainer_config(scene.root, Path(tmp) / f"run_{noise}_{use_gfl}",
                                             init_ply=scene.scene_ply_path, feature_stage_steps=args.steps, gfl=gfl)
                torch.manual_seed(0)
                started = time.perf_counter()
                trainer = config.setup(local_rank=0, world_size=1)
                trainer.setup()
                trainer.train()
                seconds = time.perf_counter() - started
                pipeline, model = trainer.pipeline, trainer.pipeline.model
                features = model.click_features.detach().cpu()
                coarse = model.level_features(features, "coarse")
                update = ""
                if use_gfl:
                    update_started = time.perf_counter()
                    pipeline.update_global_candidates(step=config.max_num_iterations)
                    update = f"{time.perf_counter() - update_started:.2f}"
                candidates = f"{model.coarse_candidates.shape[0]}/{model.fine_candidates.shape[0]}"
                print(f"{noise:5.2f} {'on' if use_gfl else 'off':>4} | "
                      f"{separation(coarse, labels['object_id']):10.3f} {kmeans_ari(coarse, labels['object_id']):10.3f} | "
                      f"{separation(features, labels['part_id']):8.3f} {kmeans_ari(features, labels['part_id']):8.3f} | "
                      f"{candidates:>9} {update:>12} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
