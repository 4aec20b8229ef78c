"""The ``drop`` command line."""
