"""When things run: `policies` (automation conditions, freshness, the writers' pool), which the
asset definitions import, and `jobs` (the jobs and the automation sensor), which imports the
assets. This ``__init__`` imports neither, so the two layers never meet in a circle."""
