"""Outputs derived from results: the human report, JSON, and (for the agent) metrics."""
