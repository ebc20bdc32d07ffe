"""The built-in workers. `SERVICE_WORKERS=name` runs `service.workers.<name>:<name>`.

A module here is imported only when its worker is selected, so the default run pays nothing
for the examples it does not use.
"""

DEFAULT_WORKERS: tuple[str, ...] = ()
