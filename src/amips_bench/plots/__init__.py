"""Figures of the paper, all drawn with one style (plots.style)."""
