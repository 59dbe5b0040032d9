"""Arc Fabric: generative video as long-lived, stateful sessions."""

__version__ = "0.1.0"
