"""What the figures measure: routing tables, IVF and HNSW sweeps, the noise test, Table 1's timing, the leakage study's clean test. Imports models, datasets and core."""
