"""Small shared helpers: atomic file writes, run directories, determinism."""
