"""molpeg CLI: `prune` commands (registered on import)."""
