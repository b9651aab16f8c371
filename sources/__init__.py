"""Event-builder sources: the client library, simulated sources, the evb-source command."""
