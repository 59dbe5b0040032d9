"""The DreamDojo plugin (hooks follow)."""
