"""The running daemon: the engine that assembles every part, the poller, scheduling, backoff,
health and its web endpoints."""
