"""Beacon's own shared building blocks: event envelope and catalog, event store, outbox, bus."""
