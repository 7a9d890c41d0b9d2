"""Layer 3, training data: SAM masks for a dataset (run over a dataset, models, the scene-segment rule, the cache)
and the datamanager that attaches them.

Imports ``clickgs_ns.io``, ``clickgs_ns.render`` (the lens model the id maps are undistorted with) and
``clickgs_ns.levels``.
"""
