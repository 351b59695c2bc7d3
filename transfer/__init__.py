"""Adapters that plug a pretrained encoder into a downstream protocol."""
