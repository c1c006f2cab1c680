"""Figures of the paper, all drawn with one style (plots.style).

Which module draws which figure, and from which files, is the figure registry's
(reporting.figures); this package holds the drawing code.
"""
