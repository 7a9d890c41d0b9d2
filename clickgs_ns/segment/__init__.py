"""Layer 5, segmentation of a trained run: loading it, the selection core (clicks, segment everything), export,
evaluation and feature maps.

Imports ``levels``, ``io``, ``render``, ``data`` and ``method``; independent of ``clickgs_ns.synth``.
"""
