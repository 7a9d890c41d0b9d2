"""The on-disk mask format: paths, reading, checking, nearest resize and compact storage."""

import numpy as np
import pytest

from clickgs_ns.io.id_maps import (
    MaskFileError,
    compact_ids,
    mask_path_for_image,
    read_id_maps,
    resize_ids_nearest,
    write_id_maps,
)


def test_mask_path_mirrors_the_image_folder(tmp_path):
    assert mask_path_for_image(tmp_path / "images" / "a.png", tmp_path) == tmp_path / "clickgs_masks" / "a.npz"
    assert mask_path_for_image(tmp_path / "images_2" / "sub" / "b.JPG", tmp_path) == (
        tmp_path / "clickgs_masks" / "sub" / "b.npz"
    )
    with pytest.raises(MaskFileError, match="not inside the dataset folder"):
        mask_path_for_image(tmp_path.parent / "elsewhere" / "images" / "a.png", tmp_path)


def test_round_trip_and_dtype(tmp_path):
    coarse = np.array([[0, 0, -1], [1, 1, 1]])
    fine = np.array([[0, 2, -1], [1, 3, 3]])
    path = tmp_path / "clickgs_masks" / "x.npz"
    write_id_maps(path, coarse, fine)
    read_coarse, read_fine = read_id_maps(path)
    assert read_coarse.dtype == np.int32 and read_fine.dtype == np.int32
    np.testing.assert_array_equal(read_coarse, coarse)
    np.testing.assert_array_equal(read_fine, fine)
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]  # no temporary file left behind


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(MaskFileError, match="missing.npz is missing"):
        read_id_maps(missing)
    truncated = tmp_path / "truncated.npz"
    write_id_maps(truncated, np.zeros((4, 4)), np.zeros((4, 4)))
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(MaskFileError, match="truncated.npz is unreadable"):
        read_id_maps(truncated)
    lacking = tmp_path / "lacking.npz"
    np.savez(lacking, coarse=np.zeros((2, 2), np.int32))
    with pytest.raises(MaskFileError, match=r"lacking.npz lacks the array\(s\) \['fine'\]"):
        read_id_maps(lacking)
    sizes = tmp_path / "sizes.npz"
    np.savez(sizes, coarse=np.zeros((2, 2), np.int32), fine=np.zeros((2, 3), np.int32))
    with pytest.raises(MaskFileError, match="differ in size"):
        read_id_maps(sizes)
    floats = tmp_path / "floats.npz"
    np.savez(floats, coarse=np.zeros((2, 2)), fine=np.zeros((2, 2)))
    with pytest.raises(MaskFileError, match="integer"):
        read_id_maps(floats)


def damage_member(path, member: str) -> None:
    """Make the deflate stream of ``member`` of the .npz ``path`` invalid (its first block type 3, reserved); the
    archive's directory and headers stay intact."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[offset + 26 : offset + 30])
    raw[offset + 30 + name_length + extra_length] = 0xFF
    path.write_bytes(bytes(raw))


def test_damaged_compressed_member_is_an_unreadable_mask_file(tmp_path):
    path = tmp_path / "damaged.npz"
    write_id_maps(path, np.zeros((40, 40)), np.ones((40, 40)))
    damage_member(path, "fine.npy")
    with pytest.raises(MaskFileError, match=r"damaged.npz is unreadable \(Error -3 while decompressing"):
        read_id_maps(path)


def test_nearest_resize_known_answer():
    ids = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(resize_ids_nearest(ids, (2, 2)), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(resize_ids_nearest(np.array([[1, 2]]), (2, 4)), [[1, 1, 2, 2], [1, 1, 2, 2]])
    assert resize_ids_nearest(ids, (4, 4)) is ids
    # never blends: every output id exists in the input
    big = np.random.default_rng(0).integers(-1, 50, size=(37, 53))
    assert set(np.unique(resize_ids_nearest(big, (11, 17)))) <= set(np.unique(big))


def test_compact_ids_picks_the_smallest_type():
    assert compact_ids(np.array([-1, 100])).dtype == np.int8
    assert compact_ids(np.array([-1, 300])).dtype == np.int16
    assert compact_ids(np.array([-1, 70000])).dtype == np.int32
    np.testing.assert_array_equal(compact_ids(np.array([-1, 300])), [-1, 300])


def test_renumber_keeps_segments_and_minus_one():
    from clickgs_ns.io.id_maps import renumber_ids

    ids = np.array([[7000, -1], [12, 7000]])
    np.testing.assert_array_equal(renumber_ids(ids), [[1, -1], [0, 1]])
    np.testing.assert_array_equal(renumber_ids(np.array([[3, 5]])), [[0, 1]])


def test_full_resolution_path_maps_downscaled_folders_only(tmp_path):
    from clickgs_ns.io.images import full_resolution_path

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    assert full_resolution_path(tmp_path / "images_2" / "a.png", tmp_path) == tmp_path / "images" / "a.png"
    assert full_resolution_path(tmp_path / "images_2" / "b.png", tmp_path) == tmp_path / "images_2" / "b.png"
    assert full_resolution_path(tmp_path / "rgb" / "a.png", tmp_path) == tmp_path / "rgb" / "a.png"
    assert full_resolution_path(tmp_path / "images" / "a.png", tmp_path) == tmp_path / "images" / "a.png"
