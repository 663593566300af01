"""The serving service: HTTP and gRPC over the online store."""
