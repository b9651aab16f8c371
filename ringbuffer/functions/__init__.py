"""Prebuilt worker functions (used when a worker has no ``file``: ``function: exporters.drain``)."""
