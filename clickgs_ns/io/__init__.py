"""Layer 1, files and the process: atomic writes, 3DGS .ply, SAM id-map files, images, selections, splat import,
and the memory allocator's policy.

Imports nothing else of clickgs_ns but ``clickgs_ns.levels``.
"""
