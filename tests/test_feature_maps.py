"""Feature-map pictures: PCA colours and the PNG names of ``clickgs render-features``."""

from pathlib import Path

import torch

from clickgs_ns.segment.feature_maps import fit_pca_basis, pca_colors, png_paths


def test_png_paths_keep_two_cameras_apart():
    images = [Path("/data/images/cam0/0001.jpg"), Path("/data/images/cam1/0001.jpg")]
    assert png_paths(images, Path("out")) == [Path("out/cam0/0001.png"), Path("out/cam1/0001.png")]


def test_png_paths_of_one_folder_are_the_image_names():
    images = [Path("images/frame_00001.jpg"), Path("images/frame_00002.png")]
    assert png_paths(images, Path("out")) == [Path("out/frame_00001.png"), Path("out/frame_00002.png")]


def test_pca_colours_separate_two_feature_clusters_and_black_out_empty_pixels():
    generator = torch.Generator().manual_seed(0)
    first = torch.tensor([1.0, 0, 0, 0]) + 0.01 * torch.randn(50, 4, generator=generator)  # [50, 4]
    second = torch.tensor([0, 1.0, 0, 0]) + 0.01 * torch.randn(50, 4, generator=generator)
    basis = fit_pca_basis(torch.cat([first, second]))
    feature_map = torch.stack([first[:4], second[:4]])  # [H=2, W=4, D=4]: one cluster per row
    alpha = torch.ones(2, 4, 1)
    alpha[1, 3] = 0.0
    colours = pca_colors(feature_map, basis, alpha)  # [2, 4, 3]
    assert colours.shape == (2, 4, 3)
    first_component = colours[..., 0]  # the one that tells the clusters apart (its sign is arbitrary)
    assert (first_component[0].mean() - first_component[1, :3].mean()).abs() > 0.8
    assert first_component[0].std() < 0.05 and first_component[1, :3].std() < 0.05
    assert colours[1, 3].eq(0).all()  # no opacity, black
