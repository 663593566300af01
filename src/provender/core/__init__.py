"""The core service: the registry over HTTP/JSON, per-project auth, and the job service (``provender core``)."""
