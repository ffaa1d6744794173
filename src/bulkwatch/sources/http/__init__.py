"""The HTTP plumbing of sources: the client, failure classification, rate limits, tokens."""
