"""Sessions in memory and the denoising loop; the Engine facade."""
