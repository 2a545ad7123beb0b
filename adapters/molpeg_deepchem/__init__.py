"""molpeg adapter for Deepchem: the hook implementations and training-loop integration."""
