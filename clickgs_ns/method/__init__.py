"""Layer 4, the method: the model, its losses, Global Feature-guided Learning, label lifting, the pipeline, the
trainer and the schedulers. Every default of the method lives in these config dataclasses.

Imports ``levels``, ``io``, ``render`` and ``data``.
"""
