"""LongLive for Arc Fabric: causal Wan 2.1 1.3B generating a block of frames at a time."""
