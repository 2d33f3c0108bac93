"""The invoker's connection to an action proxy has one deadline for the whole exchange."""

from __future__ import annotations

import socket
import threading

import pytest

from localwhisk.invoker.proxy_connection import ProxyConnection


def test_an_answer_that_trickles_in_gets_no_more_time_than_a_silent_one():
    # Prepare: a proxy that answers one byte at a time, each well inside the timeout
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n" + b" " * 40:
                if stop.wait(0.05):
                    return
                conn.sendall(bytes([byte]))

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    connection = ProxyConnection("127.0.0.1", listener.getsockname()[1])
    try:
        # Execute / Assert: the whole answer would take seconds; the deadline is half of one
        with pytest.raises(TimeoutError):
            connection.post("/run", b'{"value": {}}', timeout_s=0.5)
    finally:
        stop.set()
        connection.close()
        server.join(timeout=30)
        listener.close()
