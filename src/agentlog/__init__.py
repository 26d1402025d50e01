"""agentlog: run an AI coding agent behind a trusted recording proxy."""

__version__ = "0.1.0"
