"""The persisted job queue, the payload checks, the executors that run jobs and the worker processes."""
