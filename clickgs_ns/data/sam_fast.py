"""SAM's automatic mask generator, faster on a CPU, with the same masks.

For the SAM 1 family (vit_h, vit_l, vit_b and MobileSAM's vit_t, which share segment-anything's mask decoder). The
stock generator runs the mask decoder once per point prompt on a copy of the whole 64x64x256 image embedding, and
then upsamples all three masks of every prompt to the image before it filters any. Here the decoder's arithmetic is
regrouped, never approximated, so its outputs equal the stock decoder's up to float rounding (docs/method.md,
section 2):

1. Attention between the few prompt tokens (T = 7: IoU token, 4 mask tokens, point, padding point) and the L = 4096
   image tokens is computed with the projection folded onto the token side. ``q @ (W_k x)^T`` becomes
   ``(q W_k) @ x^T``: per head a [T, C] x [C, L] product instead of projecting every image token, and the heads'
   weighted values are mixed before their projection (softmax rows sum to 1). The image embedding is never copied
   per prompt for the first layer, where it is the same for all prompts.
2. The output upscaling (two 2x2 stride-2 transposed convolutions, a channel LayerNorm, GELUs) is a per-pixel
   matmul in channels-last order, with no convolution or channels-first LayerNorm.
3. Masks are upsampled to the image only when their predicted IoU passes the generator's threshold, the stock
   generator's first filter; the rest (stability score, boxes, NMS, small-region clean-up) is segment-anything's.

``benchmarks/bench_sam.py`` times it against the stock generator and the decoder's own forward time.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    uncrop_masks,
)
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[..., N, H * d] -> [..., H, N, d]."""
    *lead, n, dim = x.shape
    return x.reshape(*lead, n, num_heads, dim // num_heads).transpose(-3, -2)


def per_head_products(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b^T`` per head for a batch of ``a`` and one shared ``b``.

    Args:
        a: [B, H, T, d].
        b: [H, L, d], the same for the whole batch.

    Returns:
        [B, H, T, L], a strided view of one [H, B * T, L] product (a broadcast matmul would copy ``b`` B times).
    """
    B, H, T, d = a.shape
    products = a.transpose(0, 1).reshape(H, B * T, d) @ b.transpose(1, 2)  # [H, B * T, L]
    return products.view(H, B, T, -1).transpose(0, 1)


def token_image_logits(token_side: Tensor, weight: Tensor, keys: Tensor, pe_projected: Tensor) -> Tensor:
    """Per head, the dot products of the prompt tokens' side of an attention with the image tokens projected by
    ``weight``: ``token_side @ (keys W^T + pe)^T``, with the projection folded onto the token side when the image
    tokens differ per prompt.

    Args:
        token_side: [B, H, T, d] the prompt tokens' projection (queries or keys, by the attention's direction).
        weight: [H * d, C] the image side's projection weight (without its bias).
        keys: [B, L, C] image tokens, or [L, C] when they are the same for every prompt.
        pe_projected: [H, L, d] the image side's positional encoding (and bias) already projected.

    Returns:
        [B, H, T, L] logits before scaling.
    """
    B, H, T, d = token_side.shape
    if keys.dim() == 2:
        return per_head_products(token_side, pe_projected + split_heads(F.linear(keys, weight), H))
    folded = torch.einsum("bhtd,hdc->bhtc", token_side, weight.view(H, d, -1))  # [B, H, T, C]
    logits = (folded.reshape(B, H * T, -1) @ keys.transpose(1, 2)).view(B, H, T, -1)
    return logits + per_head_products(token_side, pe_projected)


def tokens_to_image(attention: Any, tokens: Tensor, tokens_pe: Tensor, keys: Tensor, keys_pe: Tensor) -> Tensor:
    """segment-anything's ``Attention(q=tokens + tokens_pe, k=keys + keys_pe, v=keys)``, regrouped.

    Args:
        attention: the decoder's ``Attention`` module (token -> image).
        tokens, tokens_pe: [B, T, C] prompt tokens and their positional encoding.
        keys: [B, L, C] image tokens, or [L, C] when they are the same for every prompt.
        keys_pe: [L, C] the image's positional encoding.

    Returns:
        [B, T, C], the attention output (before the residual add).
    """
    B, T, C = tokens.shape
    H = attention.num_heads
    q = split_heads(attention.q_proj(tokens + tokens_pe), H)  # [B, H, T, d]
    d = q.shape[-1]
    # The key projection's bias adds q . b_k to a whole row of logits: softmax over L cancels it.
    pe_keys = split_heads(F.linear(keys_pe, attention.k_proj.weight), H)  # [H, L, d]
    logits = token_image_logits(q, attention.k_proj.weight, keys, pe_keys)
    weights = torch.softmax(logits / math.sqrt(d), dim=-1)  # [B, H, T, L]
    mixed_keys = (weights.view(B, H * T, -1) @ keys).view(B, H, T, C)  # weights rows sum to 1
    values = torch.einsum("bhtc,hdc->bhtd", mixed_keys, attention.v_proj.weight.view(H, d, C))
    values = values + attention.v_proj.bias.view(H, 1, d)
    return attention.out_proj(values.transpose(1, 2).reshape(B, T, H * d))


def image_to_tokens(attention: Any, keys: Tensor, keys_pe: Tensor, tokens: Tensor, tokens_pe: Tensor) -> Tensor:
    """``keys + Attention(q=keys + keys_pe, k=tokens + tokens_pe, v=tokens)``, regrouped.

    Args:
        attention: the decoder's ``Attention`` module (image -> token).
        keys: [B, L, C] image tokens, or [L, C] when they are the same for every prompt.
        keys_pe: [L, C] the image's positional encoding.
        tokens, tokens_pe: [B, T, C] prompt tokens and their positional encoding.

    Returns:
        [B, L, C], the image tokens with the attention output added (before the LayerNorm).
    """
    B, T, C = tokens.shape
    H = attention.num_heads
    k = split_heads(attention.k_proj(tokens + tokens_pe), H)  # [B, H, T, d]
    v = split_heads(attention.v_proj(tokens), H)  # [B, H, T, d]
    d = k.shape[-1]
    pe_queries = split_heads(F.linear(keys_pe, attention.q_proj.weight, attention.q_proj.bias), H)  # [H, L, d]
    L = pe_queries.shape[1]
    logits = token_image_logits(k, attention.q_proj.weight, keys, pe_queries)
    weights = torch.softmax(logits / math.sqrt(d), dim=2)  # [B, H, T, L], each image token over the T tokens
    # Each head's values through its slice of the output projection; the bias shared out over the H heads'
    # weights, which sum to 1 each.
    projected = torch.einsum("bhtd,chd->bhtc", v, attention.out_proj.weight.view(C, H, d))  # [B, H, T, C]
    projected = projected + attention.out_proj.bias / H
    return torch.baddbmm(keys.expand(B, L, C), weights.view(B, H * T, L).transpose(1, 2),
                         projected.reshape(B, H * T, C))


def upscaled_masks(decoder: Any, keys: Tensor, hypernetwork_weights: Tensor, grid: Tuple[int, int]) -> Tensor:
    """The decoder's mask logits: its output upscaling of the image tokens, then the mask tokens' dot products.

    Args:
        decoder: segment-anything's ``MaskDecoder``.
        keys: [B, L, C] image tokens after the transformer, L = h * w.
        hypernetwork_weights: [B, M, C2] per mask, the output of its hypernetwork MLP.
        grid: (h, w) of the image tokens.

    Returns:
        [B, M, 4h, 4w] mask logits. Each 2x2 stride-2 transposed convolution maps one pixel to its 2x2 block, so it
        is a [C_in] -> [4 * C_out] matmul per pixel; the pixels are put in image order at the end.
    """
    upsample, norm, activation, upsample_again, activation_again = decoder.output_upscaling
    B, L, C = keys.shape
    h, w = grid
    C1, C2 = upsample.weight.shape[1], upsample_again.weight.shape[1]
    weight = upsample.weight.permute(0, 2, 3, 1).reshape(C, 4 * C1)  # [C, (a, b, C1)]
    weight_again = upsample_again.weight.permute(0, 2, 3, 1).reshape(C1, 4 * C2)  # [C1, (a2, b2, C2)]
    x = torch.addmm(upsample.bias.repeat(4), keys.reshape(B * L, C), weight).view(B * L * 4, C1)
    x = activation(F.layer_norm(x, (C1,), norm.weight, norm.bias, norm.eps))
    x = activation_again(torch.addmm(upsample_again.bias.repeat(4), x, weight_again))  # [B * L * 4, 4 * C2]
    M = hypernetwork_weights.shape[1]
    logits = x.view(B, L * 16, C2) @ hypernetwork_weights.transpose(1, 2)  # [B, (h, w, a, b, a2, b2), M]
    logits = logits.view(B, h, w, 2, 2, 2, 2, M).permute(0, 7, 1, 3, 5, 2, 4, 6)  # [B, M, h, a, a2, w, b, b2]
    return logits.reshape(B, M, 4 * h, 4 * w)


def decode_masks(
    decoder: Any, image_embeddings: Tensor, image_pe: Tensor, sparse_prompts: Tensor, dense_prompt: Tensor,
    mask_grid: Optional[Tuple[int, int]] = None,
) -> Tuple[Tensor, Tensor]:
    """segment-anything's ``MaskDecoder.predict_masks`` for prompts without a mask prompt, regrouped.

    Args:
        decoder: the ``MaskDecoder``.
        image_embeddings: [1, C, h, w] one image's embedding.
        image_pe: [1, C, h, w] its positional encoding.
        sparse_prompts: [B, N, C] the prompts' point (and box) embeddings.
        dense_prompt: [1 or B, C, h, w] the dense embedding, the same for every prompt (the "no mask" embedding).
        mask_grid: (rows, cols) of image tokens whose mask logits are wanted, from the top-left (default all h, w).

    Returns:
        (masks [B, M, 4 rows, 4 cols] logits, iou_predictions [B, M]) for all M mask tokens, as ``predict_masks``
        (whose masks are [B, M, 4h, 4w]; the upscaling maps each token to its own 4x4 pixels, so a crop of the
        tokens gives the same crop of the masks).
    """
    if image_embeddings.shape[0] != 1 or dense_prompt.shape[0] not in (1, sparse_prompts.shape[0]):
        raise ValueError(f"decode_masks decodes prompts on one image without mask prompts: got image embeddings "
                         f"{tuple(image_embeddings.shape)} and dense prompts {tuple(dense_prompt.shape)}")
    B = sparse_prompts.shape[0]
    C, h, w = image_embeddings.shape[1:]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)  # [1 + M, C]
    prompt_tokens = torch.cat([output_tokens.expand(B, -1, -1), sparse_prompts], dim=1)  # [B, T, C]
    keys = (image_embeddings + dense_prompt[:1]).flatten(2)[0].t()  # [L, C], the same for every prompt
    keys_pe = image_pe.flatten(2)[0].t()  # [L, C]
    transformer = decoder.transformer
    queries = prompt_tokens
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + prompt_tokens
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        attended = tokens_to_image(layer.cross_attn_token_to_image, queries, prompt_tokens, keys, keys_pe)
        queries = layer.norm2(queries + attended)
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(image_to_tokens(layer.cross_attn_image_to_token, keys, keys_pe, queries, prompt_tokens))
    attended = tokens_to_image(transformer.final_attn_token_to_image, queries, prompt_tokens, keys, keys_pe)
    queries = transformer.norm_final_attn(queries + attended)
    iou_predictions = decoder.iou_prediction_head(queries[:, 0])
    mask_tokens = queries[:, 1 : 1 + decoder.num_mask_tokens]
    hypernetwork_weights = torch.stack(
        [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
    )
    rows, cols = mask_grid or (h, w)
    if (rows, cols) != (h, w):
        keys = keys.view(B, h, w, C)[:, :rows, :cols].reshape(B, rows * cols, C)
    return upscaled_masks(decoder, keys, hypernetwork_weights, (rows, cols)), iou_predictions


def mask_token_grid(input_size: Tuple[int, int], grid: Tuple[int, int]) -> Tuple[int, int]:
    """(rows, cols) of image tokens whose masks cover the image, from the top-left of the padded square.

    The model's input is the image resized to ``input_size`` (H, W) and padded to a square; ``Sam.postprocess_masks``
    upsamples the [4h, 4w] mask logits 4x to the square (bilinear, half-pixel centres) and crops it to
    ``input_size``. A kept pixel y reads logit rows floor(s) and floor(s) + 1, s = (y + 0.5) / 4 - 0.5, so the
    logits needed are rows 0..r with r = floor((H - 0.5) / 4 - 0.5) + 1; the same for columns. Each image token
    gives 4x4 logits. Cropping the logits there changes no kept pixel (the clamp at the new border reaches only
    pixels past the image).
    """
    def needed(size: int, tokens: int) -> int:
        last_logit = math.floor((size - 0.5) / 4 - 0.5) + 1
        return min(tokens, last_logit // 4 + 1)

    return needed(input_size[0], grid[0]), needed(input_size[1], grid[1])


def image_mask_logits(low_res: Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> Tensor:
    """``Sam.postprocess_masks`` for logits cropped by ``mask_token_grid``: [N, r, c] -> [N, H0, W0] at the image's
    ``original_size``, the same values as the stock upsampling of the uncropped logits."""
    rows, cols = low_res.shape[-2:]
    if low_res.shape[0] == 0:
        return low_res.new_zeros((0, *original_size))
    logits = F.interpolate(low_res[None], (4 * rows, 4 * cols), mode="bilinear", align_corners=False)
    logits = logits[..., : input_size[0], : input_size[1]]
    return F.interpolate(logits, original_size, mode="bilinear", align_corners=False)[0]


class FastSamMaskGenerator(SamAutomaticMaskGenerator):
    """segment-anything's ``SamAutomaticMaskGenerator`` with the regrouped decoder and the IoU filter applied
    before upsampling. Same arguments, same output; takes any SAM 1 family model (segment-anything's or
    MobileSAM's ``Sam``)."""

    def _process_batch(
        self, points: np.ndarray, im_size: Tuple[int, ...], crop_box: list, orig_size: Tuple[int, ...]
    ) -> MaskData:
        predictor, sam = self.predictor, self.predictor.model
        coords = torch.as_tensor(predictor.transform.apply_coords(points, im_size), device=predictor.device)
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        sparse, dense = sam.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
        grid = mask_token_grid(predictor.input_size, predictor.features.shape[-2:])
        low_res, iou_preds = decode_masks(
            sam.mask_decoder, predictor.features, sam.prompt_encoder.get_dense_pe(), sparse, dense, grid
        )
        low_res, iou_preds = low_res[:, 1:], iou_preds[:, 1:]  # the multimask outputs: [B, 3, r, c], [B, 3]
        keep = iou_preds > self.pred_iou_thresh
        if self.pred_iou_thresh <= 0.0:
            keep = torch.ones_like(keep)
        masks = image_mask_logits(low_res[keep], predictor.input_size, predictor.original_size)
        point_per_mask = torch.as_tensor(points.repeat(keep.shape[1], axis=0))[keep.flatten().cpu()]
        data = MaskData(masks=masks, iou_preds=iou_preds[keep], points=point_per_mask)
        return self._filter_and_encode(data, crop_box, orig_size)

    def _filter_and_encode(self, data: MaskData, crop_box: list, orig_size: Tuple[int, ...]) -> MaskData:
        """The stock generator's filters after the predicted IoU: stability score, crop-edge boxes; then RLE."""
        threshold = self.predictor.model.mask_threshold
        data["stability_score"] = calculate_stability_score(data["masks"], threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        orig_h, orig_w = orig_size
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
        data["rles"] = mask_to_rle_pytorch(uncrop_masks(data["masks"], crop_box, orig_h, orig_w))
        del data["masks"]
        return data
