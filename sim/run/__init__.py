"""One run: targets, measures, the runner, the run directory session and rebuilds."""
