"""The public event contract of every Beacon context (integration events).

Importing this package registers every event in the shared catalog. A service publishes only
its own context's events; other services may read every model here to validate what they
consume. No event carries personal data.
"""

from shared.events import dispatch, points, registry  # noqa: F401  (registration)
