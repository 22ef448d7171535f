"""The featurizer: one versioned featurization for training and serving, fast and sparse."""
