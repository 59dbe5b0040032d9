"""Sessions on disk: the versioned document, checksummed tensor files written atomically,
one writer per session, lineage."""
