"""A TCP forwarder that stands in for the network path to a service, so a test can take the service away
(refused connections, open ones cut) and bring it back on the same address, as an outage does."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target>. ``stop()`` is the outage, ``start()`` the recovery."""

    def __init__(self, target_port: int, port: int = 0):
        self.target_port = target_port
        self.port = port
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut: bytes | None = None  # what a client sends before the cut

    def cut_after(self, sent: bytes) -> None:
        """Once a client has sent ``sent`` (e.g. ``b"from stdin"``: a COPY) and the server has answered, cut every
        open connection, once, as a network drop does; new connections are accepted as before."""
        self._cut = sent

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self._cut_open()

    def _cut_open(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            armed = threading.Event()  # this connection's client sent what precedes the cut
            for source, sink, from_client in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_client, armed), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, from_client: bool, armed: threading.Event
    ) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if from_client and self._cut is not None and self._cut in data:
                    armed.set()
                elif not from_client and armed.is_set() and self._cut is not None:
                    self._cut = None  # the server answered (a COPY: "send the rows"): cut now
                    self._cut_open()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
