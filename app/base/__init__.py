"""Base: where state lives and the settings, user-facing errors, long jobs (progress, cancel), the GGUF header reader."""
