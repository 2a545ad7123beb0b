"""molpeg CLI: `source` commands (registered on import)."""
