"""clickgs_ns: Click-Gaussian (ECCV 2024) as a nerfstudio method plugin.

Kept import-light: nerfstudio imports every plugin's config when any ``ns-*`` command starts.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``clickgs_ns.load`` (the scripting API, ``clickgs_ns.api.load``), imported on first use."""
    if name == "load":
        from clickgs_ns.api import load

        return load
    raise AttributeError(f"module 'clickgs_ns' has no attribute {name!r}")
