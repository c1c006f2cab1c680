"""Comparing runs: result trees, curves at equal cost, the comparison stage, overlaid figures. Imports reporting and below."""
