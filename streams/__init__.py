"""Central processing: pure numpy kernels (no I/O) and the runtimes around them (faust workers,
embedded single-process mode, batch recomputation), plus the ``cems`` command."""
