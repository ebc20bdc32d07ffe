"""Seeing what runs: stacks of tasks and threads, the task tree, metrics, the loop-stall
watchdog and the growth alarm. All of it watches and reports, with one exception: the
watchdog's thread keeps the forced exit's deadline (`runtime.forced_exit`), because that
deadline must fire precisely when the event loop no longer runs."""
