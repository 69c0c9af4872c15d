"""A virtual null-modem cable: two pseudo-terminals whose bytes are copied to each other.

A Modbus RTU server opens one end (:attr:`NullModem.a`) and a client the other (:attr:`NullModem.b`)
exactly as they would open /dev/ttyUSB0, so the serial code paths (pyserial, RTU framing and its
inter-frame timing, CRC) run for real on a machine without serial ports: in the tests, in the demo.
``unplug()`` stops the copying, as pulling the cable would. Linux/macOS only (pseudo-terminals).
Linux pseudo-terminals refuse parity (``tcsetattr`` fails with EINVAL), so use 8N2 on them: the
no-parity framing *Modbus over Serial Line* V1.02 §2.5.1 allows.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import threading
import tty

__all__ = ["NullModem"]


class NullModem:
    def __init__(self) -> None:
        self._masters: list[int] = []
        self._slaves: list[int] = []
        names = []
        for _ in range(2):
            master, slave = pty.openpty()
            tty.setraw(slave)  # no echo, no line discipline: bytes pass through untouched
            self._masters.append(master)
            self._slaves.append(slave)  # held open so the far end never sees a hang-up
            names.append(os.ttyname(slave))
        self.a, self.b = names
        self.plugged = threading.Event()
        self.plugged.set()
        self._closed = False
        self._thread = threading.Thread(target=self._copy, name="nullmodem", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        other = {self._masters[0]: self._masters[1], self._masters[1]: self._masters[0]}
        while not self._closed:
            ready, _, _ = select.select(list(other), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if self.plugged.is_set():  # unplugged: bytes are read and lost, as on a cut line
                    os.write(other[fd], data)

    def unplug(self) -> None:
        self.plugged.clear()

    def plug(self) -> None:
        self.plugged.set()

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1)
        for fd in self._masters + self._slaves:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> NullModem:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
