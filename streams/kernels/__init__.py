"""Pure emission kernels: numpy in, numpy out, no I/O, no per-reading Python loops.

Shared by every runtime (faust workers, embedded mode, batch recomputation). Every formula, constant
and validity rule cites its source in ``shared/reference/cems-standards.md``.
"""
