"""Tests of the SAM masks (clickgs_ns/data/sam_masks.py and the modules it runs: scene_segments, sam_models,
mask_cache; and the `clickgs masks` command): the area-priority id maps on hand-made segments, and the cached SAM run
with segment-anything's real SamAutomaticMaskGenerator driven by a tiny randomly initialised SAM (CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clickgs_ns.app.cli import Masks
from clickgs_ns.data.mask_cache import missing_or_stale_masks, parse_shard, read_mask_record, select_shard
from clickgs_ns.data.mask_errors import MaskCacheWarning, MaskRunError, SamCheckpointError
from clickgs_ns.data.sam_masks import SamMaskConfig, compute_masks, dataset_image_paths
from clickgs_ns.data.sam_models import build_sam_generator
from clickgs_ns.data.scene_segments import segments_to_id_maps
from clickgs_ns.io.atomic import atomic_path, writer_tag
from clickgs_ns.io.id_maps import MASKS_DIRNAME, mask_path_for_image, read_id_maps
from test_masks import damage_member

# ---------------------------------------------------------------------------------------------------------------
# segments_to_id_maps on hand-made segments


def _box(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _naive_id_maps(masks):
    """Reference: per pixel, the covering segment of largest (coarse) / smallest (fine) area; ties: lower index."""
    masks = np.asarray(masks, dtype=bool)
    areas = masks.reshape(len(masks), -1).sum(1)
    coarse = np.full(masks.shape[1:], -1, np.int32)
    fine = np.full(masks.shape[1:], -1, np.int32)
    for y, x in np.ndindex(*masks.shape[1:]):
        cover = [s for s in range(len(masks)) if masks[s, y, x]]
        if cover:
            coarse[y, x] = min(cover, key=lambda s: (-areas[s], s))
            fine[y, x] = min(cover, key=lambda s: (areas[s], s))
    return coarse, fine


def test_nested_segments_coarse_keeps_outer_fine_keeps_inner():
    outer, inner = _box((6, 8), 0, 6, 0, 6), _box((6, 8), 1, 3, 1, 3)
    coarse, fine = segments_to_id_maps(np.stack([inner, outer]))  # inner is index 0, outer index 1
    expected_coarse = np.full((6, 8), -1)
    expected_coarse[:, :6] = 1
    expected_fine = expected_coarse.copy()
    expected_fine[1:3, 1:3] = 0
    assert coarse.dtype == np.int32 and fine.dtype == np.int32
    np.testing.assert_array_equal(coarse, expected_coarse)
    np.testing.assert_array_equal(fine, expected_fine)


def test_partial_overlap_disjoint_and_uncovered_pixels():
    shape = (4, 10)
    big = _box(shape, 0, 3, 0, 4)  # area 12
    small = _box(shape, 1, 3, 3, 7)  # area 8, overlaps big on column 3, rows 1-2
    alone = _box(shape, 0, 1, 8, 10)  # area 2, disjoint
    coarse, fine = segments_to_id_maps(np.stack([small, big, alone]))
    expected_coarse = np.array([
        [1, 1, 1, 1, -1, -1, -1, -1, 2, 2],
        [1, 1, 1, 1, 0, 0, 0, -1, -1, -1],
        [1, 1, 1, 1, 0, 0, 0, -1, -1, -1],
        [-1] * 10,
    ])
    expected_fine = expected_coarse.copy()
    expected_fine[1:3, 3] = 0
    np.testing.assert_array_equal(coarse, expected_coarse)
    np.testing.assert_array_equal(fine, expected_fine)


def test_equal_areas_go_to_the_lower_index_at_both_levels_and_empty_segments_never_win():
    shape = (3, 5)
    a, b = _box(shape, 0, 2, 0, 3), _box(shape, 1, 3, 1, 4)  # both area 6, overlap at rows 1, cols 1-2
    nothing = np.zeros(shape, bool)
    coarse, fine = segments_to_id_maps(np.stack([nothing, b, a]))
    assert coarse[1, 1] == fine[1, 1] == 1
    coarse, fine = segments_to_id_maps(np.stack([a, b, nothing]))
    assert coarse[1, 1] == fine[1, 1] == 0
    assert not (coarse == 2).any() and not (fine == 2).any()


def test_sam_records_lists_and_empty_inputs():
    shape = (5, 7)
    masks = [_box(shape, 0, 5, 0, 7), _box(shape, 1, 4, 1, 4), _box(shape, 2, 3, 5, 7)]
    def xywh(m):  # SAM's bbox: XYWH with inclusive corners
        ys, xs = np.nonzero(m)
        return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]

    records = [{"segmentation": m, "area": int(m.sum()), "bbox": xywh(m)} for m in masks]
    wrong_boxes = [{"segmentation": m, "area": int(m.sum()), "bbox": [0, 0, 1, 1]} for m in masks]
    from_stack = segments_to_id_maps(np.stack(masks))
    for other in (records, wrong_boxes, masks, [{"segmentation": m} for m in masks]):
        for got, want in zip(segments_to_id_maps(other), from_stack):
            np.testing.assert_array_equal(got, want)
    for empty in (segments_to_id_maps([], image_size=shape), segments_to_id_maps(np.zeros((0, *shape), bool))):
        for level in empty:
            assert level.shape == shape and level.dtype == np.int32 and (level == -1).all()
    with pytest.raises(ValueError, match="image_size"):
        segments_to_id_maps([])
    with pytest.raises(ValueError, match="one size"):
        segments_to_id_maps([np.zeros((2, 3), bool), np.zeros((3, 2), bool)])


def test_random_ellipses_match_the_per_pixel_reference():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :32]
    for _ in range(3):
        masks = np.stack([
            ((yy - rng.uniform(0, 24)) / rng.uniform(2, 14)) ** 2 + ((xx - rng.uniform(0, 32)) / rng.uniform(2, 18)) ** 2 < 1
            for _ in range(12)
        ])
        for got, want in zip(segments_to_id_maps(masks, scene_rule=None), _naive_id_maps(masks)):
            np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------------------------
# A tiny SAM and a tiny dataset

IMAGE_HW = (48, 64)
TINY_SEED = 11  # a seed whose random SAM gives several overlapping segments on these images


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is far faster without thread start-up costs
    yield
    torch.set_num_threads(threads)


def tiny_sam(seed: int = TINY_SEED, dim: int = 32):
    """segment-anything's Sam, randomly initialised and tiny: 128 px input, 8x8 embedding, one block each."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    img_size, patch = 128, 16
    embedding = img_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=patch, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0,
            out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(embedding, embedding), input_image_size=(img_size, img_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


@pytest.fixture(scope="module")
def sam():
    return tiny_sam()


def tiny_config(**changes) -> SamMaskConfig:
    """Thresholds off so that a random model yields segments; 4x4 prompt points."""
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0,
                    device="cpu")
    settings.update(changes)
    return SamMaskConfig(**settings)


def scene_image(seed: int) -> np.ndarray:
    """RGB uint8 [48, 64, 3]: a flat background and five flat rectangles."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_HW
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3)
    for _ in range(5):
        y0, x0 = rng.integers(0, height - 8), rng.integers(0, width - 8)
        h, w = rng.integers(6, height // 2), rng.integers(6, width // 2)
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    return image


def make_dataset(root: Path, num_images: int = 6) -> list:
    """A nerfstudio-style dataset: images/frame_XXX.png and a transforms.json listing them."""
    (root / "images").mkdir(parents=True)
    paths = []
    for k in range(num_images):
        path = root / "images" / f"frame_{k:03d}.png"
        Image.fromarray(scene_image(k)).save(path)
        paths.append(path)
    frames = [{"file_path": f"images/{p.name}", "transform_matrix": np.eye(4).tolist()} for p in paths]
    (root / "transforms.json").write_text(json.dumps({"fl_x": 50, "fl_y": 50, "cx": 32, "cy": 24, "w": 64, "h": 48,
                                                      "frames": frames}))
    return paths


class GenerateSpy:
    """Counts SamAutomaticMaskGenerator.generate calls, keeps their segments, and can fail after k calls."""

    def __init__(self, monkeypatch, fail_after=None):
        from segment_anything import SamAutomaticMaskGenerator

        self.calls, self.segments, self.fail_after = 0, [], fail_after
        real = SamAutomaticMaskGenerator.generate

        def generate(generator, image):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            self.calls += 1
            records = real(generator, image)
            self.segments.append((image.copy(), records))
            return records

        monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", generate)


def mask_arrays(root: Path, paths):
    return {p.name: read_id_maps(mask_path_for_image(p, root)) for p in paths}


def files_in_masks_dir(root: Path):
    return sorted(p.name for p in (root / MASKS_DIRNAME).iterdir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sam):
    """One uninterrupted run over a 6-image dataset: (root, image paths, their id maps)."""
    root = tmp_path_factory.mktemp("reference")
    paths = make_dataset(root)
    report = compute_masks(root, paths, tiny_config(), sam=sam, progress=False)
    assert report.computed == 6 and report.skipped == 0
    return root, paths, mask_arrays(root, paths)


# ---------------------------------------------------------------------------------------------------------------
# The cached run


def test_run_writes_the_format_with_area_priority_and_a_rerun_skips_everything(tmp_path, sam, monkeypatch, reference):
    paths = make_dataset(tmp_path)
    spy = GenerateSpy(monkeypatch)
    paper_rule = tiny_config(demote_scene_segments=False)  # compared with the per-pixel reference of area priority
    report = compute_masks(tmp_path, paths, paper_rule, sam=sam, progress=False)
    assert (report.computed, report.skipped, report.empty, report.recomputed_corrupt) == (6, 0, 0, 0)
    assert spy.calls == 6
    assert files_in_masks_dir(tmp_path) == [f"frame_{k:03d}.npz" for k in range(6)]
    overlapping = 0
    for path, (image, records) in zip(sorted(paths), spy.segments):
        np.testing.assert_array_equal(image, np.asarray(Image.open(path)))
        record = read_mask_record(mask_path_for_image(path, tmp_path))
        coarse, fine = record["coarse"], record["fine"]
        assert coarse.shape == fine.shape == IMAGE_HW and coarse.dtype == np.int32
        assert record["num_segments"] == len(records) and len(record["image_sha1"]) == 40
        assert json.loads(record["settings_json"])["points_per_side"] == 4
        masks = np.stack([r["segmentation"] for r in records])
        for got, want in zip((coarse, fine), _naive_id_maps(masks)):
            np.testing.assert_array_equal(got, want)
        overlapping += int((masks.sum(0) > 1).any())
        areas = masks.reshape(len(masks), -1).sum(1)
        covered = masks.any(0)
        assert ((coarse >= 0) == covered).all() and ((fine >= 0) == covered).all()
        assert (areas[coarse[covered]] >= areas[fine[covered]]).all()
    assert overlapping >= 1, "the tiny SAM should give overlapping segments on some image"
    for name, (coarse, fine) in mask_arrays(tmp_path, paths).items():  # same as the module's reference run
        np.testing.assert_array_equal(coarse, reference[2][name][0])
        np.testing.assert_array_equal(fine, reference[2][name][1])

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / MASKS_DIRNAME).iterdir()}
    again = compute_masks(tmp_path, paths, paper_rule, sam=sam, progress=False)
    assert (again.computed, again.skipped) == (0, 6) and spy.calls == 6
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / MASKS_DIRNAME).iterdir()} == mtimes
    assert missing_or_stale_masks(tmp_path, paths, paper_rule, sam=sam) == []


def test_changed_settings_invalidate_every_file_and_changed_image_bytes_only_that_image(tmp_path, sam, monkeypatch):
    paths = make_dataset(tmp_path, num_images=4)
    compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    spy = GenerateSpy(monkeypatch)

    changed = tiny_config(points_per_side=3)
    assert missing_or_stale_masks(tmp_path, paths, changed, sam=sam) == sorted(paths)
    report = compute_masks(tmp_path, paths, changed, sam=sam, progress=False)
    assert (report.computed, report.recomputed_stale, report.skipped, spy.calls) == (4, 4, 0, 4)
    assert compute_masks(tmp_path, paths, tiny_config(points_per_side=3, points_per_batch=7), sam=sam, progress=False).skipped == 4

    image = np.asarray(Image.open(paths[2])).copy()
    image[0, 0] ^= 1
    Image.fromarray(image).save(paths[2])
    assert missing_or_stale_masks(tmp_path, paths, changed, sam=sam) == [paths[2]]
    report = compute_masks(tmp_path, paths, changed, sam=sam, progress=False)
    assert (report.computed, report.recomputed_stale, report.skipped, spy.calls) == (1, 1, 3, 5)

    other_model = tiny_sam(seed=TINY_SEED + 1)
    assert len(missing_or_stale_masks(tmp_path, paths, changed, sam=other_model)) == 4


def test_interrupted_run_leaves_complete_files_and_a_rerun_matches_one_uninterrupted_run(
        tmp_path, sam, monkeypatch, reference):
    paths = make_dataset(tmp_path)
    spy = GenerateSpy(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    assert files_in_masks_dir(tmp_path) == ["frame_000.npz", "frame_001.npz"]
    leftover = tmp_path / MASKS_DIRNAME / f".frame_002.npz.{this_host()}-{dead_pid()}.k1l2.tmp.npz"  # as left by a
    # writer killed mid-write
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    spy.fail_after = None
    report = compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    assert (report.computed, report.skipped, report.recomputed_corrupt) == (4, 2, 0)
    assert files_in_masks_dir(tmp_path) == [f"frame_{k:03d}.npz" for k in range(6)]
    for name, (coarse, fine) in mask_arrays(tmp_path, paths).items():
        np.testing.assert_array_equal(coarse, reference[2][name][0])
        np.testing.assert_array_equal(fine, reference[2][name][1])


def this_host() -> str:
    return writer_tag().rsplit("-", 1)[0]


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_keeps_the_temporary_files_of_a_writer_at_work(tmp_path, sam):
    paths = make_dataset(tmp_path, num_images=2)
    target = mask_path_for_image(paths[0], tmp_path)
    with atomic_path(target) as tmp:  # a writer at work (the first `clickgs masks` of two on one dataset)
        tmp.write_bytes(b"being written")
        report = compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
        assert report.computed == 2 and tmp.exists(), "the second run must not delete the first one's file"
    # the first writer finishes: its rename works (it raised FileNotFoundError when the second run had deleted it)
    assert target.read_bytes() == b"being written" and files_in_masks_dir(tmp_path) == ["frame_000.npz",
                                                                                         "frame_001.npz"]


def test_leftover_temp_files_are_those_of_dead_writers_only(tmp_path):
    from clickgs_ns.data.mask_cache import leftover_temp_files

    target = tmp_path / MASKS_DIRNAME / "frame_000.npz"
    target.parent.mkdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".frame_000.npz.{this_host()}-{dead_pid()}.ab12.tmp.npz",
            "alive": f".frame_000.npz.{this_host()}-{alive.pid}.cd34.tmp.npz",
            "mine": f".frame_000.npz.{this_host()}-{os.getpid()}.ef56.tmp.npz",
            "other host, fresh": f".frame_000.npz.elsewhere.example-{alive.pid}.gh78.tmp.npz",
            "other host, old": f".frame_000.npz.elsewhere.example-{alive.pid}.ij90.tmp.npz",
            "untagged, fresh": ".frame_000.npz.kl12.tmp.npz",
            "untagged, old": ".frame_000.npz.mn34.tmp.npz",
            "another file's": f".frame_001.npz.{this_host()}-{dead_pid()}.op56.tmp.npz",
        }
        for kind, name in names.items():
            (target.parent / name).write_bytes(b"")
            if kind.endswith("old"):
                two_hours_ago = time.time() - 7200
                os.utime(target.parent / name, (two_hours_ago, two_hours_ago))
        stale = {path.name for path in leftover_temp_files(target)}
        assert stale == {names["dead"], names["other host, old"], names["untagged, old"]}
    finally:
        alive.kill()
        alive.wait()


def test_an_undecodable_image_is_skipped_with_a_warning_and_the_command_fails_at_the_end(
        tmp_path, sam, monkeypatch, capsys):
    import segment_anything

    paths = make_dataset(tmp_path / "data", num_images=3)
    paths[1].write_bytes(b"not an image")
    with pytest.warns(MaskCacheWarning, match=f"Image {paths[1]} cannot be read or decoded \\(not an image file"):
        report = compute_masks(tmp_path / "data", paths, tiny_config(), sam=sam, progress=False)
    assert report.failed == [paths[1]] and (report.computed, report.skipped) == (2, 0)
    assert files_in_masks_dir(tmp_path / "data") == ["frame_000.npz", "frame_002.npz"]

    paths[2].write_bytes(paths[2].read_bytes()[:100])  # truncated: the header reads, the pixels do not
    mask_path_for_image(paths[2], tmp_path / "data").unlink()
    checkpoint = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam().state_dict(), checkpoint)
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam())
    config = dataclasses.replace(tiny_config(), sam_checkpoint=checkpoint, sam_model="vit_b")
    with pytest.warns(MaskCacheWarning) as warned:
        with pytest.raises(SystemExit) as exit_info:
            Masks(data=tmp_path / "data", sam=config).main()
    assert [f"{path} cannot be read or decoded" in str(w.message) for w in warned for path in paths[1:]] == [
        True, False, False, True]
    message = str(exit_info.value.code)
    assert "2 image(s) could not be read or decoded" in message
    assert str(paths[1]) in message and str(paths[2]) in message and str(paths[0]) not in message
    assert "1 computed" in capsys.readouterr().err, "the other images are done before it fails"
    assert files_in_masks_dir(tmp_path / "data") == ["frame_000.npz"]


KILLED_RUN = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    import segment_anything
    from test_sam_masks import tiny_sam, tiny_config
    from clickgs_ns.data.sam_masks import compute_masks
    from pathlib import Path
    torch.set_num_threads(1)
    real = segment_anything.SamAutomaticMaskGenerator.generate
    def slow(self, image):
        time.sleep(0.3)
        return real(self, image)
    segment_anything.SamAutomaticMaskGenerator.generate = slow
    root = Path({root!r})
    compute_masks(root, sorted((root / "images").iterdir()), tiny_config(), sam=tiny_sam(), progress=False)
""")


def test_sigkill_mid_run_leaves_readable_files_and_a_rerun_completes(tmp_path, sam, reference):
    paths = make_dataset(tmp_path)
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    masks_dir = tmp_path / MASKS_DIRNAME
    while time.time() < deadline and proc.poll() is None:
        if masks_dir.is_dir() and len(list(masks_dir.glob("frame_*.npz"))) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(masks_dir.glob("frame_*.npz"))
    assert 2 <= len(done) < 6, f"the child wrote {len(done)} files before the kill"
    for path in done:
        read_id_maps(path)  # complete and readable
    report = compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    assert report.skipped == len(done) and report.computed == 6 - len(done)
    assert files_in_masks_dir(tmp_path) == [f"frame_{k:03d}.npz" for k in range(6)]
    for name, (coarse, fine) in mask_arrays(tmp_path, paths).items():
        np.testing.assert_array_equal(coarse, reference[2][name][0])
        np.testing.assert_array_equal(fine, reference[2][name][1])


def test_two_shards_give_the_single_run_files(tmp_path, sam, monkeypatch, reference):
    paths = make_dataset(tmp_path)
    spy = GenerateSpy(monkeypatch)
    shuffled = [paths[k] for k in (4, 1, 5, 0, 3, 2)]
    assert select_shard(shuffled, tmp_path, (1, 2)) == [paths[1], paths[3], paths[5]]
    first = compute_masks(tmp_path, shuffled, tiny_config(), shard=(0, 2), sam=sam, progress=False)
    assert first.images == 3 and files_in_masks_dir(tmp_path) == ["frame_000.npz", "frame_002.npz", "frame_004.npz"]
    second = compute_masks(tmp_path, paths, tiny_config(), shard=(1, 2), sam=sam, progress=False)
    assert (first.computed, second.computed, spy.calls) == (3, 3, 6)
    for name, (coarse, fine) in mask_arrays(tmp_path, paths).items():
        np.testing.assert_array_equal(coarse, reference[2][name][0])
        np.testing.assert_array_equal(fine, reference[2][name][1])
    with pytest.raises(MaskRunError, match="shard 2/2"):
        compute_masks(tmp_path, paths, tiny_config(), shard=(2, 2), sam=sam, progress=False)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [truncate, partial(damage_member, member="coarse.npy")],
                         ids=["truncated", "damaged-compressed-member"])
def test_damaged_cache_file_is_reported_and_recomputed(tmp_path, sam, reference, damage):
    paths = make_dataset(tmp_path, num_images=3)
    compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    broken = mask_path_for_image(paths[1], tmp_path)
    damage(broken)
    assert missing_or_stale_masks(tmp_path, paths, tiny_config(), sam=sam) == [paths[1]]
    assert missing_or_stale_masks(tmp_path, paths, SamMaskConfig()) == [paths[1]], "ns-train's check, no checkpoint"
    with pytest.warns(MaskCacheWarning, match=str(broken)):
        report = compute_masks(tmp_path, paths, tiny_config(), sam=sam, progress=False)
    assert (report.computed, report.recomputed_corrupt, report.skipped) == (1, 1, 2)
    assert str(broken) in report.warnings[0]
    coarse, fine = read_id_maps(broken)
    np.testing.assert_array_equal(coarse, reference[2][paths[1].name][0])
    np.testing.assert_array_equal(fine, reference[2][paths[1].name][1])


def test_image_without_segments_gets_all_minus_one_and_a_warning(tmp_path, sam):
    paths = make_dataset(tmp_path, num_images=1)
    nothing_passes = tiny_config(pred_iou_thresh=1e9)
    with pytest.warns(MaskCacheWarning, match=f"no segment in {paths[0]}"):
        report = compute_masks(tmp_path, paths, nothing_passes, sam=sam, progress=False)
    assert (report.computed, report.empty) == (1, 1)
    coarse, fine = read_id_maps(mask_path_for_image(paths[0], tmp_path))
    assert coarse.shape == IMAGE_HW and (coarse == -1).all() and (fine == -1).all()


def test_small_region_cleanup_runs_through_opencv(tmp_path, sam):
    paths = make_dataset(tmp_path, num_images=1)
    report = compute_masks(tmp_path, paths, tiny_config(min_mask_region_area=20), sam=sam, progress=False)
    assert report.computed == 1


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and the command line


def test_missing_checkpoint_error_names_the_path_and_the_official_files(tmp_path):
    missing = tmp_path / "nowhere" / "sam_vit_h_4b8939.pth"
    with pytest.raises(SamCheckpointError) as err:
        build_sam_generator(SamMaskConfig(sam_checkpoint=missing))
    for text in (str(missing), "sam_vit_h_4b8939.pth", "sam_vit_l_0b3195.pth", "sam_vit_b_01ec64.pth",
                 "github.com/facebookresearch/segment-anything"):
        assert text in str(err.value)
    paths = make_dataset(tmp_path / "data", num_images=1)
    with pytest.raises(SamCheckpointError, match=str(missing)):
        compute_masks(tmp_path / "data", paths, SamMaskConfig(sam_checkpoint=missing), progress=False)
    with pytest.raises(SystemExit, match=str(missing)):
        Masks(data=tmp_path / "data", sam=SamMaskConfig(sam_checkpoint=missing)).main()
    with pytest.raises(SamCheckpointError, match="No SAM checkpoint given"):
        compute_masks(tmp_path / "data", paths, SamMaskConfig(), progress=False)


def test_cli_parses_flags_and_rejects_bad_shards_and_data(tmp_path):
    import tyro

    cli = tyro.cli(Masks, args=["--data", str(tmp_path), "--sam-checkpoint", "/ckpt/sam.pth", "--sam-model", "vit_b",
                                "--shard", "1/4", "--points-per-side", "16"])
    assert cli.sam.sam_checkpoint == Path("/ckpt/sam.pth") and cli.sam.sam_model == "vit_b"
    assert cli.sam.points_per_side == 16 and cli.shard == "1/4"
    assert parse_shard("1/4") == (1, 4) and parse_shard("0/1") == (0, 1)
    for bad in ("3/2", "2/2", "-1/2", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(MaskRunError, match="K/N"):
            parse_shard(bad)
    with pytest.raises(SystemExit, match="'3/2'"):
        Masks(data=tmp_path, shard="3/2").main()
    with pytest.raises(SystemExit, match="does not exist"):
        Masks(data=tmp_path / "missing").main()
    with pytest.raises(SystemExit, match="neither a transforms.json nor an images/"):
        Masks(data=tmp_path).main()


def test_dataset_image_lists(tmp_path):
    paths = make_dataset(tmp_path, num_images=3)
    assert dataset_image_paths(tmp_path) == (tmp_path, paths)
    assert dataset_image_paths(tmp_path / "transforms.json") == (tmp_path, paths)
    (tmp_path / "images_2").mkdir()
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][0]["file_path"] = "images_2/frame_000.png"  # downscaled frames map to the full-size image
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert dataset_image_paths(tmp_path)[1][0] == paths[0]
    (tmp_path / "transforms.json").unlink()
    assert dataset_image_paths(tmp_path) == (tmp_path, paths)  # every image under images/
    meta["frames"][1]["file_path"] = "images/gone.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(MaskRunError, match="gone.png"):
        dataset_image_paths(tmp_path)


def test_cli_end_to_end_with_a_checkpoint_file(tmp_path, monkeypatch, capsys):
    import segment_anything

    checkpoint = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam().state_dict(), checkpoint)
    wrong = tmp_path / "wrong_sam.pth"
    torch.save(tiny_sam(dim=16).state_dict(), wrong)

    def build_tiny(checkpoint=None):
        model = tiny_sam(seed=0)
        model.load_state_dict(torch.load(checkpoint))
        return model

    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", build_tiny)
    paths = make_dataset(tmp_path / "data", num_images=2)
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0)
    report = Masks(data=tmp_path / "data", sam=SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_b",
                                                             **settings)).main()
    assert (report.computed, report.skipped) == (2, 0)
    assert "2 computed" in capsys.readouterr().err
    record = read_mask_record(mask_path_for_image(paths[0], tmp_path / "data"))
    model = json.loads(record["settings_json"])["model"]
    assert model == {"sam_model": "vit_b", "checkpoint_name": "tiny_sam.pth",
                     "checkpoint_bytes": checkpoint.stat().st_size}
    moved = tmp_path / "elsewhere" / "tiny_sam.pth"  # moving the checkpoint keeps the cache valid
    moved.parent.mkdir()
    checkpoint.rename(moved)
    config = SamMaskConfig(sam_checkpoint=moved, sam_model="vit_b", **settings)
    assert missing_or_stale_masks(tmp_path / "data", paths, config) == []
    with pytest.raises(MaskRunError, match="does not fit the model type vit_b"):
        build_sam_generator(SamMaskConfig(sam_checkpoint=wrong, sam_model="vit_b"))


def test_slurm_array_script_shards_equal_one_unsharded_run(tmp_path):
    """docs/slurm_masks.sbatch run as tasks 0 and 1 of a 2-task array (its #SBATCH lines are comments to bash),
    through the real `clickgs masks` command with a tiny random SAM registered as vit_b, equals one run without
    shards."""
    import shutil

    script = Path(__file__).resolve().parents[1] / "docs" / "slurm_masks.sbatch"
    checkpoint = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam().state_dict(), checkpoint)
    wrapper = tmp_path / "clickgs_tiny.py"  # the clickgs entry point, with the tiny SAM as "vit_b"
    wrapper.write_text(
        "import sys, torch, segment_anything\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_sam_masks import tiny_sam\n"
        "def build(checkpoint=None):\n"
        "    model = tiny_sam(seed=0)\n"
        "    model.load_state_dict(torch.load(checkpoint))\n"
        "    return model\n"
        "segment_anything.sam_model_registry['vit_b'] = build\n"
        "from clickgs_ns.app.cli import entrypoint\n"
        "sys.argv[0] = 'clickgs'\n"
        "entrypoint()\n")
    flags = ["--sam-model", "vit_b", "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh",
             "0", "--min-mask-region-area", "0", "--device", "cpu"]
    paths = make_dataset(tmp_path / "sharded")
    shutil.copytree(tmp_path / "sharded", tmp_path / "single")
    env = {**os.environ, "CLICKGS": f"{sys.executable} {wrapper}", "SLURM_ARRAY_TASK_COUNT": "2",
           "OMP_NUM_THREADS": "1"}
    for task in ("0", "1"):
        result = subprocess.run(["bash", str(script), str(tmp_path / "sharded"), str(checkpoint), *flags],
                                env={**env, "SLURM_ARRAY_TASK_ID": task}, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert f"shard {task}/2" in result.stdout and "3 computed" in result.stderr
    assert len(files_in_masks_dir(tmp_path / "sharded")) == len(paths)
    single = subprocess.run([sys.executable, str(wrapper), "masks", "--data", str(tmp_path / "single"),
                             "--sam-checkpoint", str(checkpoint), *flags], env=env, capture_output=True, text=True,
                            timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    sharded = mask_arrays(tmp_path / "sharded", paths)
    whole = mask_arrays(tmp_path / "single", [tmp_path / "single" / "images" / p.name for p in paths])
    assert sorted(sharded) == sorted(whole)
    for name in sharded:
        np.testing.assert_array_equal(sharded[name][0], whole[name][0])
        np.testing.assert_array_equal(sharded[name][1], whole[name][1])
    missing = subprocess.run(["bash", str(script), str(tmp_path / "sharded"), str(checkpoint)],
                             env={k: v for k, v in env.items() if not k.startswith("SLURM")}, capture_output=True,
                             text=True)
    assert missing.returncode != 0 and "not a Slurm array task" in missing.stderr


def test_vit_t_without_mobile_sam_names_the_extra(tmp_path, monkeypatch):
    from clickgs_ns.data.sam_models import sam_package

    monkeypatch.setitem(sys.modules, "mobile_sam", None)  # as if the extra were not installed
    checkpoint = tmp_path / "mobile_sam.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(MaskRunError, match=r"pip install -e '\.\[mobilesam\]'"):
        sam_package("vit_t")
    with pytest.raises(MaskRunError, match="mobilesam"):
        build_sam_generator(SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_t"))
    with pytest.raises(SamCheckpointError, match="MobileSAM"):
        build_sam_generator(SamMaskConfig(sam_checkpoint=tmp_path / "missing.pt", sam_model="vit_t"))


def test_sam2_model_through_clickgs_masks(tmp_path):
    """--sam-model sam2.1_hiera_t through Meta's sam2 package (random weights saved as a checkpoint: the code path,
    not the quality), cached and fingerprinted like the others; a checkpoint of another model is refused."""
    pytest.importorskip("sam2", reason="the sam2 extra is not installed (see SAM2_INSTALL)")
    from sam2.build_sam import build_sam2

    from clickgs_ns.data.sam_models import SAM2_CONFIGS

    torch.manual_seed(0)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2(SAM2_CONFIGS["sam2.1_hiera_t"], ckpt_path=None, device="cpu").state_dict()},
               checkpoint)
    paths = make_dataset(tmp_path / "data", num_images=2)
    config = SamMaskConfig(sam_checkpoint=checkpoint, sam_model="sam2.1_hiera_t", points_per_side=4,
                           pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0, device="cpu")
    report = Masks(data=tmp_path / "data", sam=config).main()
    assert (report.computed, report.skipped) == (2, 0)
    for path in paths:
        coarse, fine = read_id_maps(mask_path_for_image(path, tmp_path / "data"))
        assert coarse.shape == fine.shape == IMAGE_HW
    model = json.loads(read_mask_record(mask_path_for_image(paths[0], tmp_path / "data"))["settings_json"])["model"]
    assert model["sam_model"] == "sam2.1_hiera_t" and model["checkpoint_name"] == checkpoint.name
    assert Masks(data=tmp_path / "data", sam=config).main().skipped == 2
    wrong = tmp_path / "not_sam2.pt"
    torch.save(tiny_sam().state_dict(), wrong)
    with pytest.raises(MaskRunError, match="does not fit the model type sam2.1_hiera_t"):
        build_sam_generator(dataclasses.replace(config, sam_checkpoint=wrong))


# ---------------------------------------------------------------------------------------------------------------
# Scene segments: a segment of the whole scene must not become every object's coarse id


def _room(shape=(40, 60)):
    """Four separate objects (one with two parts) on a floor; ``scene`` covers floor and objects (75% of the
    image), the sky (the top quarter) is its own segment."""
    objects = [_box(shape, 14, 22, 4, 12), _box(shape, 14, 24, 16, 26), _box(shape, 26, 36, 30, 40),
               _box(shape, 20, 30, 46, 56)]
    parts = [_box(shape, 20, 25, 46, 56), _box(shape, 25, 30, 46, 56)]
    scene, sky = _box(shape, 10, 40, 0, 60), _box(shape, 0, 10, 0, 60)
    return objects, parts, scene, sky


def test_a_scene_segment_loses_every_coarse_pixel_another_segment_covers():
    objects, parts, scene, sky = _room()
    segments = np.stack([scene, sky, *objects, *parts])  # scene is 0, sky 1, objects 2-5, parts 6-7
    coarse, fine = segments_to_id_maps(segments)
    for k, obj in enumerate(objects):
        assert (coarse[obj] == 2 + k).all()  # each object is its own coarse segment, parts included
    floor = scene & ~np.any(objects, axis=0)
    assert (coarse[floor] == 0).all() and (coarse[sky] == 1).all()  # the floor keeps the scene's id
    assert (fine[parts[0]] == 6).all() and (fine[floor] == 0).all()
    paper_coarse, paper_fine = segments_to_id_maps(segments, scene_rule=None)
    assert (paper_coarse[scene] == 0).all() and np.array_equal(paper_fine, fine)  # the paper: one coarse id


def test_a_large_object_with_a_few_parts_stays_one_coarse_segment():
    shape = (40, 60)
    cat = _box(shape, 5, 40, 5, 55)  # 73% of the image, like chelsea's cat
    eyes, nose = _box(shape, 10, 14, 10, 20), _box(shape, 20, 24, 25, 30)
    ear, ear_tip = _box(shape, 6, 9, 40, 50), _box(shape, 6, 8, 40, 44)  # the tip is inside the ear: not counted
    coarse, _ = segments_to_id_maps(np.stack([cat, eyes, nose, ear, ear_tip]))
    assert (coarse[cat] == 0).all()


def test_a_whole_image_segment_around_a_scene_segment_is_a_scene_segment_too():
    objects, parts, scene, sky = _room()
    everything = np.ones_like(scene)  # contains the scene segment, the sky and the objects
    segments = np.stack([everything, scene, sky, *objects])
    coarse, _ = segments_to_id_maps(segments)
    for k, obj in enumerate(objects):
        assert (coarse[obj] == 3 + k).all()
    assert (coarse[sky] == 2).all()


def test_demoting_scene_segments_is_a_setting_in_the_fingerprint(tmp_path):
    from clickgs_ns.data.mask_cache import sam_settings, settings_fingerprint

    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"x")
    on, off = (SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_b", demote_scene_segments=flag)
               for flag in (True, False))
    assert settings_fingerprint(sam_settings(on)) != settings_fingerprint(sam_settings(off))
    assert sam_settings(off)["scene_segment_rule"] is None


def test_scene_segments_counts_only_outermost_contained_segments():
    from clickgs_ns.data.scene_segments import SceneSegmentRule, _masks_areas_windows, scene_segments

    objects, parts, scene, sky = _room()
    masks, areas, windows = _masks_areas_windows(np.stack([scene, sky, *objects, *parts]))
    assert scene_segments(masks, areas, windows).tolist() == [True] + [False] * 7
    # the two parts are inside object 3: four outermost segments, not six
    assert not scene_segments(masks, areas, windows, SceneSegmentRule(min_contained=5)).any()
    assert not scene_segments(masks, areas, windows, SceneSegmentRule(min_image_share=0.8)).any()


def test_sam_runs_at_the_working_size_and_the_maps_come_back_at_full_size(tmp_path, sam, monkeypatch):
    from clickgs_ns.data.mask_cache import sam_settings, settings_fingerprint
    from clickgs_ns.data.sam_masks import working_image

    image = np.random.default_rng(0).integers(0, 255, (30, 80, 3), dtype=np.uint8)
    assert working_image(image, 40).shape == (15, 40, 3) and working_image(image, 0) is image
    assert working_image(image, 80) is image, "a photo within the working size is left as it is"
    paths = make_dataset(tmp_path, num_images=2)
    spy = GenerateSpy(monkeypatch)
    compute_masks(tmp_path, paths, tiny_config(max_image_side=32), sam=sam, progress=False)
    assert [seen.shape for seen, _ in spy.segments] == [(24, 32, 3)] * 2, "SAM saw the 64x48 photos at 32x24"
    for path, (seen, records) in zip(sorted(paths), spy.segments):
        coarse, fine = read_id_maps(mask_path_for_image(path, tmp_path))
        assert coarse.shape == fine.shape == IMAGE_HW
        small, _ = segments_to_id_maps(records, image_size=seen.shape[:2])
        np.testing.assert_array_equal(coarse[1::2, 1::2], small), "each working pixel becomes a 2x2 block"
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"x")
    sizes = [SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_b", max_image_side=side) for side in (1024, 0)]
    assert settings_fingerprint(sam_settings(sizes[0])) != settings_fingerprint(sam_settings(sizes[1]))
