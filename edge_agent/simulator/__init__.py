"""Plant simulator: flue-gas physics (vectorised) and, on top of it, the devices an edge agent reads."""
