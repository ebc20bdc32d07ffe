"""The built-in workers. `SERVICE_WORKERS=name` runs `service.workers.<name>:<name>`.

A module here is imported only when its worker is selected, so the default run pays nothing
for the examples it does not use.
"""

#: What runs when SERVICE_WORKERS is not set: the examples. The poller comes first, so it
#: starts first and stops last, after the ticker that feeds it.
DEFAULT_WORKERS: tuple[str, ...] = ("jobs", "ticker")
