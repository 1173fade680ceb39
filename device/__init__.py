"""Device stage: runtimes and (later) the capture daemon. Never imports torch."""
