"""Point-in-time historical retrieval over batch sources."""
