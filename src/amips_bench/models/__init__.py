"""The learned models and how they are trained: SupportNet and KeyNet, the router baselines, losses, FLOP counts, training and the evaluation it runs. Imports datasets and core."""
