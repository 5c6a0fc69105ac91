"""BGN fine-tuning (UniVG paper 3.2-3.4): data, cached encodings, the training objective and
the loop. The command line is `python -m univg_core.cli.train`."""
