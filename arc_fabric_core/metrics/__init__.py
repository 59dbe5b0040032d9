"""Quality metrics of a generated video.

    from arc_fabric_core.metrics import compute
    report = compute(["clip", "temporal"], frames, prompt="a fox in the snow")

``frames`` are what ``arc_decode`` gives: float in [0, 1], (F, H, W, 3). Built in:

- ``clip``: CLIP score of every frame against the prompt (open_clip; cosine similarity
  of the image and text embeddings), mean and per frame.
- ``psnr``, ``ssim``, ``lpips``: against a reference video of the same shape.
- ``temporal``: consistency between consecutive frames (SSIM of each pair).

Backbones (CLIP's, LPIPS's) come from local files — no hub is ever reached. Without
them a metric that needs them fails with the setting to give, unless random backbones
are asked for explicitly (``allow_random=True``): then every result says so.

Third-party metrics register through the ``arc_register_metrics`` hook.
"""

from __future__ import annotations

from arc_fabric_core.metrics.registry import Metric, MetricResult, available, compute, register

__all__ = ["Metric", "MetricResult", "available", "compute", "register"]
