"""Reading results and showing them: the results reader, tables, the reproduction report, the leakage analysis, the figures. Imports experiments and below."""
