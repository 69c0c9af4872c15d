"""Modbus TCP/RTU: point definitions, the block-read planner, the vectorised decoder, and the poll shell."""
