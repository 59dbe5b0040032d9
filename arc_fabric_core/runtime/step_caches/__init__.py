"""Step caches: skip a diffusers transformer's block stack at some denoising steps,
reusing or forecasting what it would have added, with all their state in the session's
checkpoints (``StepContext.checkpointed``), so a resume or a fork stays bit-exact.

- :mod:`.blocks`: the control of a transformer's block stack (installed once per model).
- :mod:`.policies`: when to skip and what to put in place of the blocks (fbc, magcache,
  taylorseer; their settings are ``contract.speed``'s).
- :mod:`.plugin`: the pluggy plugin that wraps every model's ``arc_denoise_step``.
"""
