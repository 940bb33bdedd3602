"""The checks of check_manifests.py, one module per concern."""
