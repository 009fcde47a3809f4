"""The ``novalite`` command line."""
