"""OPC UA: device and point configuration (:mod:`.config`) and the driver (:mod:`.driver`, needs asyncua)."""
