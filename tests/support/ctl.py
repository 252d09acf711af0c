"""A stand-in for conmon's side of its ctl FIFO, for tests of what the node writes there."""

import os
import select
import threading


class CtlReader:
    """conmon's side of a ctl FIFO: a thread reads messages as they come, as conmon's main
    loop does (request_reopen waits until the FIFO is drained), and keeps them for the test."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._dummy_writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # as conmon holds one
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.005)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    continue
                with self._lock:
                    self._buf += data

    def messages(self) -> bytes:
        with self._lock:
            out = bytes(self._buf)
            self._buf.clear()
        return out

    def close(self):
        self._stop.set()
        self._thread.join()
        os.close(self.fd)
        os.close(self._dummy_writer)
