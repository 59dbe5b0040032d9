"""The command line: generation through Hydra and the subcommands (sessions, jobs, serve, env...)."""
