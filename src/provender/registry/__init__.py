"""The registry: persisted definitions per project, and the rules for changing them."""
