"""Plumbing every mlcycle service shares: settings, logging, errors, metrics, store, Kafka, gRPC."""
