"""The threaded HTTP/1.1 WSGI server (runtimes.wsgiserver) over real loopback sockets."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from runtimes.wsgiserver import WSGIServer

TIMEOUT = 5


@pytest.fixture
def serve():
    """serve(app, **options) -> a WSGIServer on 127.0.0.1 serving in a thread (`.thread`), stopped at teardown."""
    started = []

    def start(app, **options):
        server = WSGIServer("127.0.0.1", 0, app, **options)
        server.thread = threading.Thread(target=server.serve_forever, daemon=True)
        server.thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(timeout_s=TIMEOUT)
        server.thread.join(TIMEOUT)
        assert not server.thread.is_alive()


def echo_app(seen: list):
    """Records each environ (with the body it read as `body`) and answers 200 with `echo:<body>`."""

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        seen.append(dict(environ, body=environ["wsgi.input"].read(length)))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(5 + length))])
        return [b"echo:" + seen[-1]["body"]]

    return app


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def read_until(sock: socket.socket, marker: bytes | None = None) -> bytes:
    """Reads until `marker` is in what arrived, or until EOF when marker is None (a timeout fails the test)."""
    data = b""
    while marker is None or marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            assert marker is None, f"EOF before {marker!r}: {data!r}"
            break
        data += chunk
    return data


def exchange(server, data: bytes) -> bytes:
    """Sends `data` on a new connection and returns everything the server writes until it closes."""
    with connect(server) as sock:
        sock.sendall(data)
        return read_until(sock)


def responses(data: bytes, *, head: bool = False) -> list[tuple[int, dict, bytes]]:
    """Splits raw response bytes into (status, lower-cased headers, body); `head`: no bodies follow."""
    out = []
    while data:
        top, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {top!r}"
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        n = 0 if head else int(headers.get("content-length", 0))
        out.append((int(status_line.split()[1]), headers, data[:n]))
        data = data[n:]
    return out


def test_keep_alive_requests_see_a_full_environ(serve):
    seen = []
    server = serve(echo_app(seen))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(
            "POST", "/a%20b?x=1&y=%20", body=b"hello", headers={"X-Thing": "v1", "Content-Type": "application/json"}
        )
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b"echo:hello")
        conn.request("GET", "/second")
        second = conn.getresponse()
        assert (second.status, second.read()) == (200, b"echo:")
    finally:
        conn.close()
    a, b = seen
    assert (a["REQUEST_METHOD"], a["PATH_INFO"], a["QUERY_STRING"]) == ("POST", "/a b", "x=1&y=%20")
    assert (a["HTTP_X_THING"], a["CONTENT_TYPE"], a["CONTENT_LENGTH"], a["body"]) == (
        "v1",
        "application/json",
        "5",
        b"hello",
    )
    assert (b["REQUEST_METHOD"], b["PATH_INFO"], b["QUERY_STRING"], b["body"]) == ("GET", "/second", "", b"")
    assert a["REMOTE_PORT"] == b["REMOTE_PORT"]  # one connection for both


def test_pipelined_requests_are_answered_in_order(serve):
    seen = []
    server = serve(echo_app(seen))
    data = exchange(
        server,
        b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo",
    )
    assert [(s, body) for s, _, body in responses(data)] == [(200, b"echo:one"), (200, b"echo:two")]
    assert [e["PATH_INFO"] for e in seen] == ["/one", "/two"]


def test_chunked_request_body_arrives_whole(serve):
    seen = []
    server = serve(echo_app(seen))
    data = exchange(
        server,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    [(status, _, body)] = responses(data)
    assert (status, body) == (200, b"echo:hello world")
    assert (seen[0]["CONTENT_LENGTH"], seen[0]["body"]) == ("11", b"hello world")
    assert "HTTP_TRANSFER_ENCODING" not in seen[0]


def test_expect_100_continue_is_answered_before_the_body(serve):
    seen = []
    server = serve(echo_app(seen))
    with connect(server) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        [(status, _, body)] = responses(read_until(sock))
    assert (status, body) == (200, b"echo:body")


def test_oversized_headers_are_431_and_close(serve):
    seen = []
    server = serve(echo_app(seen), max_header_bytes=1024)
    data = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2048 + b"\r\n\r\n")
    [(status, headers, _)] = responses(data)
    assert (status, headers["connection"]) == (431, "close")
    assert seen == []


def test_oversized_content_length_is_413_before_the_body(serve):
    seen = []
    server = serve(echo_app(seen), max_body_bytes=1024)
    # no body is sent: the answer (then EOF) must come from the head alone
    data = exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    [(status, headers, _)] = responses(data)
    assert (status, headers["connection"]) == (413, "close")
    assert seen == []


def test_malformed_request_line_is_400_and_close(serve):
    seen = []
    server = serve(echo_app(seen))
    [(status, headers, _)] = responses(exchange(server, b"NOT A REQUEST\r\n\r\n"))
    assert (status, headers["connection"]) == (400, "close")
    assert seen == []
    # a request that parsed whole before the garbage is still answered, then the 400
    data = exchange(server, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nNOT A REQUEST\r\n\r\n")
    assert [status for status, _, _ in responses(data)] == [200, 400]
    assert [e["PATH_INFO"] for e in seen] == ["/ok"]


def test_http10_without_keep_alive_closes_after_the_response(serve):
    server = serve(echo_app([]))
    [(status, headers, body)] = responses(exchange(server, b"GET / HTTP/1.0\r\n\r\n"))
    assert (status, headers["connection"], body) == (200, "close", b"echo:")


def test_head_gets_headers_with_content_length_but_no_body(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"twelve bytes"]

    server = serve(app)
    data = exchange(server, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"\r\n\r\n")
    [(status, headers, _)] = responses(data, head=True)
    assert (status, headers["content-length"]) == (200, "12")


def test_connection_close_from_the_client_closes_after_the_response(serve):
    server = serve(echo_app([]))
    # a second request after the close must not be answered: EOF follows the first response
    first, second = b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    data = exchange(server, first + second)
    [(status, headers, _)] = responses(data)
    assert (status, headers["connection"]) == (200, "close")


def test_app_error_is_500_logged_and_closes_and_the_server_keeps_serving(serve, caplog):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    server = serve(app)
    with caplog.at_level("ERROR", logger="wsgiserver"):
        data = exchange(server, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive asked, close given
    [(status, headers, _)] = responses(data)
    assert (status, headers["connection"]) == (500, "close")
    assert any(r.exc_info and "/boom" in r.getMessage() for r in caplog.records)
    [(status, _, body)] = responses(exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert (status, body) == (200, b"fine")


def test_connections_beyond_max_connections_get_503(serve):
    server = serve(echo_app([]), max_connections=1)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")  # answered, so the server holds this connection
        assert conn.getresponse().read() == b"echo:"
        [(status, headers, _)] = responses(exchange(server, b""))
        assert (status, headers["connection"]) == (503, "close")
        conn.request("GET", "/")  # the first one is still served
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_idle_kept_connection_is_closed_by_the_server(serve):
    server = serve(echo_app([]), idle_timeout_s=0.2)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until(sock)  # EOF within TIMEOUT, or socket.timeout fails the test
    [(status, headers, _)] = responses(data)
    assert status == 200 and "connection" not in headers  # kept open, then closed for idleness


def test_shutdown_lets_the_request_in_progress_finish_then_refuses(serve):
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        entered.set()
        assert release.wait(TIMEOUT)
        start_response("200 OK", [])
        return [b"done"]

    server = serve(app)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(TIMEOUT)
        stopper = threading.Thread(target=server.shutdown, kwargs={"timeout_s": 2 * TIMEOUT}, daemon=True)
        stopper.start()
        server.thread.join(TIMEOUT)  # serve_forever returns once the listener is shut
        assert not server.thread.is_alive() and stopper.is_alive()  # shutdown waits for the request
        release.set()
        [(status, headers, body)] = responses(read_until(sock))
    assert (status, headers["connection"], body) == (200, "close", b"done")
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    with pytest.raises(ConnectionRefusedError):
        connect(server)


def test_headers_with_underscores_are_not_passed_to_the_app(serve):
    seen = []
    server = serve(echo_app(seen))
    exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX_Thing: smuggled\r\nX-Other: ok\r\nConnection: close\r\n\r\n")
    assert "HTTP_X_THING" not in seen[0] and seen[0]["HTTP_X_OTHER"] == "ok"


def test_content_length_is_computed_and_204_has_no_body(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/empty":
            start_response("204 No Content", [])
            return [b"ignored"]
        start_response("200 OK", [])
        return [b"ab", b"", b"cd"]

    server = serve(app)
    data = exchange(
        server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert data.endswith(b"\r\n\r\n")  # nothing after the 204's head
    (ok, ok_headers, ok_body), (empty, empty_headers, _) = responses(data)
    assert (ok, ok_headers["content-length"], ok_body) == (200, "4", b"abcd")
    assert empty == 204 and "content-length" not in empty_headers


def test_a_header_line_that_never_ends_is_refused_not_buffered(serve):
    server = serve(echo_app([]), max_header_bytes=1024)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
        try:
            for _ in range(64):  # far past the bound, never a line end
                sock.sendall(b"a" * 1024)
        except OSError:
            pass  # refused and closed while sending: what the test wants
        try:
            data = read_until(sock)  # EOF, after a 431 where the client got it
        except ConnectionResetError:
            data = b""  # closed with the client's bytes unread: the kernel resets
        except TimeoutError:
            pytest.fail("the server kept reading a header line that never ends")
        assert data == b"" or data.startswith(b"HTTP/1.1 431")
