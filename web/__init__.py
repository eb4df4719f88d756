"""Starlette front end: pages, JSON API, server-sent events."""
