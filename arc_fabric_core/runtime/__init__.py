"""Where models run: devices, the model cache (placement, eviction, parking), plugin envs."""
