"""Finding installed plugins and calling the stage hooks of the plugin that owns a model; checking what hooks return."""
