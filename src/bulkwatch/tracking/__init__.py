"""Tracking: the pure rules that turn one poll into state changes and events."""
