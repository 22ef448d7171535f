"""The collector: REST ingest of comments and votes into Kafka, and the indexer into the store."""
