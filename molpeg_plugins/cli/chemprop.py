"""molpeg CLI: `chemprop` commands (registered on import)."""
