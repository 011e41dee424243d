"""Shared widgets and pure helpers of the app, one module each."""
