"""The PostgreSQL state store: schema and migrations, row mapping, poll state and the outbox."""
