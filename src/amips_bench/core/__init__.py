"""The core every other part builds on: configuration and its schema, settings, files and provenance, devices, the paper's numbers. Imports nothing of the package outside core."""
