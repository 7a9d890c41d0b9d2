"""Tests of clickgs_ns/data/sam_fast.py: the regrouped mask decoder against segment-anything's own, the cropped
upsampling against Sam.postprocess_masks, and the fast generator against the stock one (random models here; real
MobileSAM weights on a real photo in test_sam_real.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from clickgs_ns.data.sam_fast import (
    FastSamMaskGenerator,
    decode_masks,
    image_mask_logits,
    mask_token_grid,
    per_head_products,
)
from test_sam_masks import scene_image, tiny_sam


def random_decoder(seed: int, dim: int = 32, heads: int = 4, depth: int = 2) -> MaskDecoder:
    """segment-anything's MaskDecoder with every parameter random, LayerNorm scales and biases included."""
    torch.manual_seed(seed)
    decoder = MaskDecoder(
        num_multimask_outputs=3, transformer=TwoWayTransformer(depth=depth, embedding_dim=dim, mlp_dim=64,
                                                               num_heads=heads),
        transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=32,
    ).eval()
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return decoder


@pytest.mark.parametrize("depth,grid", [(2, (8, 8)), (1, (6, 10)), (3, (5, 7))])
def test_decoder_gives_segment_anythings_masks_and_ious(depth, grid):
    decoder = random_decoder(seed=depth, depth=depth)
    dim, (h, w) = 32, grid
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, dim, h, w, generator=generator)
    image_pe = torch.randn(1, dim, h, w, generator=generator)
    sparse = torch.randn(5, 2, dim, generator=generator)  # 5 prompts, a point and the padding point each
    dense = torch.randn(1, dim, 1, 1, generator=generator).expand(5, dim, h, w)
    with torch.no_grad():
        expected_masks, expected_ious = decoder.predict_masks(image, image_pe, sparse, dense)
        masks, ious = decode_masks(decoder, image, image_pe, sparse, dense)
        cropped, _ = decode_masks(decoder, image, image_pe, sparse, dense, mask_grid=(h - 2, w - 1))
    assert masks.shape == expected_masks.shape == (5, 4, 4 * h, 4 * w)
    scale = expected_masks.abs().max()
    assert (masks - expected_masks).abs().max() < 1e-5 * scale
    assert (ious - expected_ious).abs().max() < 1e-5 * expected_ious.abs().max()
    torch.testing.assert_close(cropped, masks[..., : 4 * (h - 2), : 4 * (w - 1)], rtol=0, atol=1e-5 * scale)


def test_per_head_products_is_a_batched_matmul_with_known_shape():
    a, b = torch.randn(3, 2, 4, 5), torch.randn(2, 7, 5)
    products = per_head_products(a, b)
    assert products.shape == (3, 2, 4, 7)
    torch.testing.assert_close(products, a @ b.transpose(1, 2)[None])


@pytest.mark.parametrize("input_size,original_size", [((768, 1024), (300, 400)), ((576, 1024), (540, 960)),
                                                      ((1024, 683), (1024, 683)), ((1024, 1024), (64, 64)),
                                                      ((37, 1024), (11, 300))])
def test_cropped_logits_upsample_to_the_stock_image_masks(input_size, original_size):
    sam = tiny_sam()
    sam.image_encoder.img_size = 1024  # postprocess_masks upsamples to the model's input square
    low_res = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(0))
    rows, cols = mask_token_grid(input_size, (64, 64))
    assert rows <= 64 and cols <= 64 and 16 * rows >= input_size[0] and 16 * cols >= input_size[1]
    expected = sam.postprocess_masks(low_res[None], input_size, original_size)[0]
    got = image_mask_logits(low_res[:, : 4 * rows, : 4 * cols], input_size, original_size)
    assert got.shape == expected.shape == (3, *original_size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_token_grid_keeps_only_what_the_image_needs():
    assert mask_token_grid((768, 1024), (64, 64)) == (49, 64)  # a 4:3 image: the bottom quarter is padding
    assert mask_token_grid((576, 1024), (64, 64)) == (37, 64)  # 16:9
    assert mask_token_grid((1024, 1024), (64, 64)) == (64, 64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_generator_returns_the_stock_generators_segments(seed):
    sam = tiny_sam(seed=seed)
    image = scene_image(seed)
    settings = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=0)
    stock = SamAutomaticMaskGenerator(sam, **settings).generate(image)
    fast = FastSamMaskGenerator(sam, **settings).generate(image)
    assert len(fast) == len(stock) > 0
    for ours, theirs in zip(fast, stock):
        assert (ours["segmentation"] != theirs["segmentation"]).mean() < 1e-3
        assert ours["bbox"] == theirs["bbox"] and ours["point_coords"] == theirs["point_coords"]
        assert ours["predicted_iou"] == pytest.approx(theirs["predicted_iou"], abs=1e-5)
        assert ours["stability_score"] == pytest.approx(theirs["stability_score"], abs=1e-3)


@pytest.mark.parametrize("seed", [0, 3])
def test_fast_generator_applies_the_iou_threshold_as_stock_does(seed):
    from segment_anything import SamPredictor

    sam, image = tiny_sam(seed=seed), scene_image(seed)
    settings = dict(points_per_side=6, stability_score_thresh=0.0, min_mask_region_area=0)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    points = torch.as_tensor(predictor.transform.apply_coords(
        FastSamMaskGenerator(sam, **settings).point_grids[0] * np.array(image.shape[1::-1]), image.shape[:2]))
    with torch.no_grad():
        _, ious, _ = predictor.predict_torch(points[:, None].float(), torch.ones(len(points), 1), multimask_output=True)
    # the middle of the widest gap between predicted IoUs near the median: no mask sits on the threshold (the two
    # paths' coordinates differ in rounding)
    values = ious.flatten().sort().values
    middle = len(values) // 2
    gaps = values[middle - 3 : middle + 4].diff()
    widest = int(gaps.argmax()) + middle - 3
    threshold = float(values[widest] + values[widest + 1]) / 2
    fast = FastSamMaskGenerator(sam, pred_iou_thresh=threshold, **settings).generate(image)
    stock = SamAutomaticMaskGenerator(sam, pred_iou_thresh=threshold, **settings).generate(image)
    assert len(fast) == len(stock) > 0
    assert [r["bbox"] for r in fast] == [r["bbox"] for r in stock]
    assert all(r["predicted_iou"] > threshold for r in fast)
    assert FastSamMaskGenerator(sam, pred_iou_thresh=1e9, **settings).generate(image) == []
