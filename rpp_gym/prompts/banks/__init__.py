"""Packaged sentence banks, one JSON file per domain."""
