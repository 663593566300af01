"""The `provender` command line."""
