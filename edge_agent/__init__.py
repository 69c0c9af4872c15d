"""The gateway side: protocol drivers (Modbus, OPC UA), durable outbox and Kafka uplink, and the plant
simulator used by tests, benchmarks and the demo."""
