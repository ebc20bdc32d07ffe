"""The project's workers. `SERVICE_WORKERS=name` runs `service.workers.<name>:<name>`."""
