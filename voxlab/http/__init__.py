"""The HTTP port: the management API, session access URLs and /metrics (twisted.web)."""
