"""The PostgreSQL state store: schema and migrations, row mapping, a poll's statements, poll
state and the outbox."""
