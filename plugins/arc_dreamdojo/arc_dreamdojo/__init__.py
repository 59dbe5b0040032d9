"""DreamDojo for Arc Fabric: an action-conditioned robot world model as a live session."""
