"""Delivery: the outbox dispatcher and its retry policy, from stored rows to notifiers."""
