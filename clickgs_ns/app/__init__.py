"""Layer 6, what users touch: the Python API, the ``clickgs`` CLI and the viewer (the preset's pipeline, its
controls and their GUI-free state). Thin layers over ``clickgs_ns.segment``.
"""
