"""Measuring what UniVG Mini renders against the ground truth of its world: the metrics
(`metrics`, `frechet`), the paper's studies run on the Mini (`studies`) and their Markdown
tables (`report`). `python -m univg_core.cli.evaluate` runs them."""
