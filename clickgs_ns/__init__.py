"""clickgs_ns: Click-Gaussian (ECCV 2024) as a nerfstudio method plugin.

Kept import-light: nerfstudio imports every plugin's config when any ``ns-*`` command starts.
"""

__version__ = "0.1.0"
