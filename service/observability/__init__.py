"""Seeing what runs: stacks of tasks and threads, without driving anything."""
