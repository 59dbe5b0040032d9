"""Wan 2.1 text-to-video for Arc Fabric."""

__version__ = "0.1.0"
