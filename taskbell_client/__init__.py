"""Taskbell's Python producer client."""
