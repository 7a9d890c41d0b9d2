"""Layer 6, what users touch: the Python API, the ``clickgs`` CLI and the viewer controls. Thin layers over
``clickgs_ns.segment``.
"""
