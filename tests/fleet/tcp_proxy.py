"""A TCP proxy on loopback the test controls: it forwards a node's etcd traffic to one member and,
when blackholed, forwards nothing (connections stay open, bytes go nowhere, as behind a dropped
route) until healed, which closes every connection made meanwhile so clients connect afresh."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        with self._lock:
            stale, self._sockets = self._sockets, set()
        for sock in stale:
            _close(sock)
        self._open.set()

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.heal()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.add(client)
        self._open.wait()  # blackholed: the connection is accepted, nothing goes through
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.add(upstream)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                self._open.wait()  # blackholed: what arrives is held, never delivered
                if not self._open.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
