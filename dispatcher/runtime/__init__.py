"""What every process runs with: settings, logs, metrics, probes, lifecycle, retries, the API write
rate limit, small concurrency helpers."""
