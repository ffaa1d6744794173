"""The SQLite state store: schema, group commit, poll state and the outbox."""
