"""Orders: consultations, product cards, carts, idempotent checkout and the outbox."""
