"""Plumbing shared by every mlcycle service: settings, logging, errors, metrics, store, Kafka, gRPC."""
