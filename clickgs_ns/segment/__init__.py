"""Layer 5, segmentation of a trained run: loading it, the selection core (clicks, segment everything), export,
evaluation and feature maps.

Imports ``io``, ``render``, ``data`` and ``method``.
"""
