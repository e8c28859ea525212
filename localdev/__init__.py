"""Local development tooling: stand-in servers, sample events, the demo. Never deployed."""
