"""molpeg plugin entry point for Deepchem (registered in the ``molpeg`` entry-point group).

Importing this module must not import deepchem: hook implementations import it lazily.
"""
