"""The measuring machinery: points, child processes, measuring, sweeps and executors."""
