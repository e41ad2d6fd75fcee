"""Local stack for development and tests: embedded nats-server and PostgreSQL, and a supervisor."""
