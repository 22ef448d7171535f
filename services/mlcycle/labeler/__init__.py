"""The labeler: labeled data out of crowd votes and labeling functions, with diagnostics."""
