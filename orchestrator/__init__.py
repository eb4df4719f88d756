"""Runbook orchestrator: the domain (no web framework, no browser)."""
