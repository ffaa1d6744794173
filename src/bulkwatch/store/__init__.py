"""State stores: task state and the delivery outbox, committed together."""
