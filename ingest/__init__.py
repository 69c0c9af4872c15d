"""Central entry points: reading batches from Kafka, self-reported monthly accounting parameters."""
