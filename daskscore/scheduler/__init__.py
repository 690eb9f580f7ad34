"""Run on the scheduler: the jobs it knows, stale-job reaping and dashboard routes."""
