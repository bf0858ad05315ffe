"""Readers and writers for datasets and motion capture, the plain structures they return, transforms."""
