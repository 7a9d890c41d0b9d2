"""Layer 1, files: atomic writes, 3DGS .ply, SAM id-map files, images, selections and splat import.

Imports nothing else of clickgs_ns.
"""
