"""Ingestion jobs: offline to online, stream to online."""
