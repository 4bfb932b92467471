"""The model outside the pipeline: the drawing page and HTTP API, its transport bounds,
and the export for other runtimes."""
