"""Making the data a model trains on: synthetic and BEIR data, encoding, embeddings, splits, clusters, exact targets, realism statistics. Imports core only."""
