"""molpeg plugin entry point for Chemprop (registered in the ``molpeg`` entry-point group).

Importing this module must not import chemprop: hook implementations import it lazily.
"""
