"""Device stage: runtimes, the capture daemon and the review page. Never imports torch."""
