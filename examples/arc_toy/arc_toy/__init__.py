"""An example third-party plugin for Arc Fabric (see README: Write a plugin)."""
