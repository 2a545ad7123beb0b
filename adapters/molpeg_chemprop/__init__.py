"""molpeg adapter for Chemprop: the hook implementations and training-loop integration."""
