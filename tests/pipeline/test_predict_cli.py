"""`normpipe predict` against servers that misbehave: one line, exit 2, and
--timeout as a deadline for the whole command."""

import socket
import threading
import time

import pytest

from tests.conftest import assert_user_error, run_cli


def http_response(body: bytes, status="200 OK", length=None) -> bytes:
    length = len(body) if length is None else length
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n").encode() + body


METADATA_404 = http_response(b'{"error": "no metadata"}', status="404 Not Found")


class ScriptedServer:
    """A TCP server answering each request with scripted bytes: `metadata`
    for GET, `predict` for POST; a list of (bytes, pause) pieces trickles."""

    def __init__(self, predict, metadata=METADATA_404):
        self.answers = {"GET": metadata, "POST": predict}
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            answer = self.answers[request.split(b" ", 1)[0].decode()]
            try:
                if answer is None:  # hang
                    time.sleep(60)
                elif isinstance(answer, list):
                    for piece, pause in answer:
                        conn.sendall(piece)
                        time.sleep(pause)
                else:
                    conn.sendall(answer)
            except OSError:
                pass

    def close(self):
        self.sock.close()


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3,\n")
    return path


def predict(server_url, rows, *extra):
    return run_cli(["predict", "--server", server_url, "--model", "m", "--input", str(rows), *extra], timeout=120)


def ask(server, rows, *extra):
    """`normpipe predict` against a ScriptedServer, closed afterwards: (result, seconds)."""
    start = time.monotonic()
    try:
        result = predict(server.url, rows, *extra)
    finally:
        server.close()
    return result, time.monotonic() - start


@pytest.mark.parametrize(
    "answer, expected",
    [
        (http_response(b'{"predictions": [1.0, '), "answer is not JSON"),
        (b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n", "not an HTTP response"),
        (http_response(b'{"predictions": [1.0, 2.0]}', length=200), "answer ends before its Content-Length"),
        (http_response(b"null"), "unexpected answer: null"),
        (http_response(b'{"predictions": ["\xff\xfe"]}'), "answer is not UTF-8"),
        (http_response(b'{"predictions": "abc"}'), "expected a list of 2 predictions"),
        (http_response(b'{"predictions": [1.0]}'), "expected a list of 2 predictions"),
    ],
    ids=["malformed_json", "not_http", "short_body", "null", "not_utf8", "predictions_string", "too_few_predictions"],
)
def test_malformed_answers_are_one_line(rows, answer, expected):
    result, _ = ask(ScriptedServer(answer), rows, "--timeout", "10")
    assert_user_error(result, expected)
    assert result.stdout == ""


def test_valid_answer_prints_one_prediction_per_row(rows):
    result, _ = ask(ScriptedServer(http_response(b'{"predictions": [0.5, NaN]}')), rows)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0.5", "NaN"]


def test_trickling_server_hits_the_timeout_as_a_total_deadline(rows):
    # headers promptly, then one byte every 0.5 s: no single read times out
    body = b'{"predictions": [1.0, 2.0]}' + b" " * 100
    head = http_response(b"", length=len(body))
    server = ScriptedServer([(head, 0)] + [(body[i:i + 1], 0.5) for i in range(len(body))])
    result, elapsed = ask(server, rows, "--timeout", "2")
    assert_user_error(result, "no complete answer within --timeout 2")
    assert elapsed < 6, elapsed


def test_hanging_metadata_call_is_reported_within_the_timeout(rows):
    server = ScriptedServer(http_response(b'{"predictions": [1.0, 2.0]}'), metadata=None)
    result, elapsed = ask(server, rows, "--timeout", "2")
    assert_user_error(result, "/v1/models/m/metadata: no complete answer within --timeout 2")
    assert elapsed < 6, elapsed


@pytest.mark.parametrize("url, expected", [
    ("localhost:8501", "--server must be an http:// or https:// URL"),
    ("http://", "--server must be an http:// or https:// URL"),
    ("ftp://example.com", "--server must be an http:// or https:// URL"),
    ("http://exa mple.com", "--server must be an http:// or https:// URL"),
])
def test_bad_server_url_is_refused(rows, url, expected):
    assert_user_error(predict(url, rows), expected)


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf"])
def test_timeout_must_be_positive_and_finite(rows, timeout):
    assert_user_error(predict("http://127.0.0.1:1", rows, "--timeout", timeout), "--timeout must be a positive number of seconds")


def test_missing_input_is_refused_before_calling_the_server(tmp_path):
    """No server listens on port 1: the input is checked first."""
    missing = tmp_path / "absent.csv"
    assert_user_error(predict("http://127.0.0.1:1", missing), f"{missing}: no such file")
