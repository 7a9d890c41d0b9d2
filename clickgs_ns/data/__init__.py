"""Layer 3, training data: SAM masks for a dataset, the datamanager that attaches them, and synthetic scenes.

Imports ``clickgs_ns.io`` and ``clickgs_ns.render``.
"""
