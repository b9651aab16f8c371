"""Event-builder source clients: the client library, simulated sources and the evb-source command."""
