"""LTX-Video text-to-video for Arc Fabric."""

__version__ = "0.1.0"
