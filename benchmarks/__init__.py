"""The benchmarks, installed with the project: each runs as `python benchmarks/<name>.py` or
`python -m benchmarks.<name>`, from any folder; `benchmarks.output` is what they share."""
