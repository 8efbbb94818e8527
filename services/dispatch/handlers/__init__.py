"""Dispatch's application services, one module per area: load the aggregate, let the pure domain
decide, record the events and bring the views along, in one transaction. Each function is plain
and can be called from a test; `now` is the server clock, passed in."""
