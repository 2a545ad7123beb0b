"""molpeg CLI: `scaling` commands (registered on import)."""
