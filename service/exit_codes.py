"""The service's exit codes, in one place: what an orchestrator or a script sees.

`0` a clean stop; `1` a worker or resource failed in a way nobody expected; `2` the service
could not start as configured (bad settings, a port in use, a database it cannot reach), or a
command was used wrongly; `3` the forced exit: shutdown did not finish within
`SERVICE_SHUTDOWN_TIMEOUT`; `70` (EX_SOFTWARE) a worker gave up after its restart budget.
"""

from __future__ import annotations

EXIT_CLEAN = 0
EXIT_CRASHED = 1
EXIT_USAGE = 2
EXIT_FORCED = 3
EXIT_GAVE_UP = 70
