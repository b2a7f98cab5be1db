"""Test helpers as a package (``tests`` is on pytest's ``pythonpath``): tiny models, job configs, paths."""
