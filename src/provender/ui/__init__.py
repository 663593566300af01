"""The feature discovery UI: server-rendered pages over the registry (docs/ui.md)."""
