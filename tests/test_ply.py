"""Standard 3DGS .ply I/O: round trip, the Inria layout, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from clickgs_ns.io.ply import GaussianPlyError, read_gaussian_ply, write_gaussian_ply, write_point_cloud_ply


def _random_gaussians(n: int, sh_degree: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2
    return dict(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        scales=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32),
        features_dc=rng.normal(size=(n, 3)).astype(np.float32),
        features_rest=rng.normal(size=(n, k - 1, 3)).astype(np.float32),
    )


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_round_trip(tmp_path, sh_degree):
    g = _random_gaussians(50, sh_degree)
    extra = {"object_id": np.arange(50, dtype=np.int64) % 7, "score": np.linspace(0, 1, 50)}
    path = tmp_path / "splat.ply"
    write_gaussian_ply(path, **g, extra=extra)
    ply = read_gaussian_ply(path)
    assert ply.num_gaussians == 50 and ply.sh_degree == sh_degree
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        np.testing.assert_array_equal(getattr(ply, name), g[name], err_msg=name)
        assert getattr(ply, name).dtype == np.float32
    assert sorted(ply.extra) == ["object_id", "score"]
    assert ply.extra["object_id"].dtype == np.int32
    np.testing.assert_array_equal(ply.extra["object_id"], extra["object_id"])
    np.testing.assert_allclose(ply.extra["score"], extra["score"], rtol=1e-6)
    assert not list(tmp_path.glob(".*tmp*")), "the atomic writer left a temporary file"


def test_standard_layout_and_inria_f_rest_order(tmp_path):
    # One Gaussian, SH degree 1 (K = 4): features_rest[0, k, c] = 10 * c + k, so red = 0, 1, 2; green = 10, 11, 12; ...
    features_rest = (10 * np.arange(3)[None, None, :] + np.arange(3)[None, :, None]).astype(np.float32)  # [1, 3, 3]
    path = tmp_path / "one.ply"
    write_gaussian_ply(
        path, means=[[1, 2, 3]], scales=[[-1, -2, -3]], quats=[[1, 0, 0, 0]], opacities=[0.5],
        features_dc=[[0.1, 0.2, 0.3]], features_rest=features_rest, extra={"part_id": np.array([4])},
    )
    raw = PlyData.read(str(path))
    assert not raw.text and raw.byte_order == "<"
    names = [p.name for p in raw["vertex"].properties]
    expected = (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(9)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "part_id"]
    )
    assert names == expected
    v = raw["vertex"].data[0]
    assert [float(v[f"f_rest_{i}"]) for i in range(9)] == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert (float(v["x"]), float(v["scale_2"]), float(v["rot_0"]), float(v["f_dc_1"])) == pytest.approx((1, -3, 1, 0.2))
    assert raw["vertex"].data.dtype["x"] == np.dtype("<f4") and int(v["part_id"]) == 4
    np.testing.assert_array_equal(read_gaussian_ply(path).features_rest, features_rest)


def test_reads_torch_tensors_and_degree_zero(tmp_path):
    g = {k: torch.from_numpy(v) for k, v in _random_gaussians(10, 0).items() if k != "features_rest"}
    path = tmp_path / "deg0.ply"
    write_gaussian_ply(path, **g, features_rest=None)
    ply = read_gaussian_ply(path)
    assert ply.features_rest.shape == (10, 0, 3) and ply.sh_degree == 0 and ply.extra == {}
    assert not any(p.name.startswith("f_rest") for p in PlyData.read(str(path))["vertex"].properties)
    np.testing.assert_array_equal(ply.means, g["means"].numpy())


def test_writer_rejects_bad_shapes(tmp_path):
    g = _random_gaussians(5, 1)
    with pytest.raises(GaussianPlyError, match="quats"):
        write_gaussian_ply(tmp_path / "a.ply", **{**g, "quats": g["quats"][:, :3]})
    with pytest.raises(GaussianPlyError, match="features_rest"):
        write_gaussian_ply(tmp_path / "a.ply", **{**g, "features_rest": np.zeros((5, 2, 3))})  # K = 3 is not a square
    with pytest.raises(GaussianPlyError, match="clashes"):
        write_gaussian_ply(tmp_path / "a.ply", **g, extra={"opacity": np.zeros(5)})
    assert not (tmp_path / "a.ply").exists()


def test_non_3dgs_ply_errors_name_file_and_missing_properties(tmp_path):
    path = tmp_path / "points.ply"
    write_point_cloud_ply(path, np.zeros((4, 3)), np.zeros((4, 3), dtype=np.uint8))
    with pytest.raises(GaussianPlyError) as err:
        read_gaussian_ply(path)
    message = str(err.value)
    assert str(path) in message and "f_dc_0" in message and "rot_3" in message and "opacity" in message

    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all")
    with pytest.raises(GaussianPlyError, match="garbage.ply"):
        read_gaussian_ply(garbage)

    faces_only = tmp_path / "faces.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "face")]).write(str(faces_only))
    with pytest.raises(GaussianPlyError, match="faces.ply.*no 'vertex'"):
        read_gaussian_ply(faces_only)


def test_point_cloud_ply(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(20, 3)).astype(np.uint8)
    path = tmp_path / "sparse_pc.ply"
    write_point_cloud_ply(path, points, colors)
    data = PlyData.read(str(path))["vertex"].data
    assert data.dtype.names == ("x", "y", "z", "red", "green", "blue")
    assert data.dtype["red"] == np.dtype("u1")
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1), points)
    np.testing.assert_array_equal(np.stack([data["red"], data["green"], data["blue"]], 1), colors)
    with pytest.raises(GaussianPlyError):
        write_point_cloud_ply(path, points, colors.astype(np.float32) / 255)


def test_atomic_writes_leave_the_permissions_a_plain_write_would(tmp_path):
    import os

    from clickgs_ns.io.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
