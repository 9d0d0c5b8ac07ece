"""Serving client: rows from a CSV to TF Serving's REST predict API.

Request body (`/v1/models/NAME:predict`, row format):
  {"signature_name": "serving_default", "instances": [{"fare": 12.5, ...}, ...]}
A missing value (empty cell, nan) is sent as the JSON literal NaN, which TF
Serving's REST API accepts and the exported graph imputes. The inputs to send
are read from the model's metadata (`/v1/models/NAME/metadata`) when the
server provides it; otherwise every CSV column is sent. A model whose
signature takes one [batch, F] matrix (MATRIX_INPUT) gets each row as a list,
in the column order of its export's assets.extra/normpipe_features.json:
  {"signature_name": "serving_default", "instances": [[12.5, 3.0, ...], ...]}
A DT_STRING input (a categorical column) gets the cell's text as it is ("" =
missing), beside the matrix when there is one:
  {"instances": [{"normpipe_feature_matrix": [12.5, 3.0], "company": "Flash Cab"}]}
"""

import csv
import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from normpipe.core.errors import UserError
from normpipe.io import paths
from normpipe.serving import serving_layout


def check_input(path: str) -> None:
    """Refuses an input file that does not exist, local or a URI."""
    if not paths.exists(path):
        raise UserError(f"{path}: no such file")


def read_rows(path: str, columns=None, texts=()):
    """CSV rows as {column: float} (NaN for missing), the `texts` columns as
    their text; `columns` (and `texts`) must all exist. `path` may be a URI
    (Beam's FileSystems)."""
    check_input(path)
    try:
        with paths.open_text_input(path) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            wanted = list(columns) if columns else [c for c in header if c not in set(texts)]
            absent = [c for c in wanted + list(texts) if c not in header]
            if absent:
                raise UserError(f"{path}: no column(s) {', '.join(absent)} (the model takes "
                                f"{', '.join(wanted + list(texts))})")
            rows = [{**_parse_row(path, reader.line_num, row, wanted), **{c: row.get(c) or "" for c in texts}}
                    for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise UserError(f"{path}: no data rows")
    return rows


def _parse_row(path, line, row, wanted):
    parsed = {}
    for name in wanted:
        text = (row.get(name) or "").strip()
        try:
            parsed[name] = float(text) if text else math.nan
        except ValueError:
            raise UserError(f"{path} line {line} column '{name}': non-numeric value {text!r}") from None
    return parsed


def matrix_columns(names, model_dir):
    """The columns, in order, of a model whose signature's inputs `names`
    hold MATRIX_INPUT (and DT_STRING ones beside it), read from the export
    at `model_dir` (a version or model directory); None for a model with
    one input per feature."""
    if serving_layout.MATRIX_INPUT not in (names or ()):
        return None
    if not model_dir:
        raise UserError(f"the model's signature takes one [batch, F] matrix ({serving_layout.MATRIX_INPUT}); pass "
                        f"--model-dir (its export) for the column order in assets.extra/{serving_layout.FEATURES_FILE}")
    version_dir = model_dir
    if not paths.exists(paths.join(model_dir, "assets.extra", serving_layout.FEATURES_FILE)):
        versions = serving_layout.existing_versions(model_dir)
        version_dir = paths.join(model_dir, str(versions[-1])) if versions else model_dir
    try:
        return list(serving_layout.read_features_file(version_dir)["inputs"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{model_dir}: no readable assets.extra/{serving_layout.FEATURES_FILE} ({exc})") from None


def request_rows(rows, matrix=None, texts=()) -> list:
    """Parsed rows as the instances of a request: the `matrix` columns (the
    export's order) as one list per row, alone or beside the `texts`."""
    if not matrix:
        return rows
    if not texts:
        return [[row[c] for c in matrix] for row in rows]
    return [{serving_layout.MATRIX_INPUT: [row[c] for c in matrix], **{c: row[c] for c in texts}} for row in rows]


def build_predict_request(rows, signature="serving_default") -> dict:
    """Rows as {column: value} (one input per feature) or as lists (a matrix input)."""
    return {"signature_name": signature, "instances": [list(r) if isinstance(r, (list, tuple)) else dict(r)
                                                       for r in rows]}


def encode_request(body: dict) -> bytes:
    """JSON with NaN/Infinity literals (TF Serving's REST API reads them)."""
    return json.dumps(body, allow_nan=True).encode("utf-8")


def check_server_url(server: str) -> str:
    """`--server` as http(s)://HOST[:PORT][/PATH], without a trailing slash."""
    parsed = urllib.parse.urlsplit(server or "")
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:
        port_ok = False
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok or any(c.isspace() for c in server):
        raise UserError(f"--server must be an http:// or https:// URL such as http://localhost:8501. Received: {server!r}")
    return server.rstrip("/")


_SOCKET_GRACE_S = 1.0


def _call(url, data=None, timeout=30.0, deadline=None):
    """The JSON answer of one request, all of it within `timeout` seconds
    (or by `deadline`, a `time.monotonic()` value, when given).

    A socket timeout bounds each read, not the whole answer (a server
    trickling a byte at a time never trips it), so the request runs in a
    daemon thread that is abandoned when the deadline passes.
    """
    result = {}

    def work():
        try:
            # The socket's own timeout a second past the deadline: the deadline
            # (the join below) decides, however late a loaded machine wakes the
            # waiting thread; the socket's would otherwise race it.
            result["answer"] = _fetch(url, data, max(wait, 1e-3) + _SOCKET_GRACE_S)
        except BaseException as exc:  # pylint: disable=broad-except  -- re-raised below
            result["error"] = exc

    wait = timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        raise UserError(f"{url}: no complete answer within --timeout {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["answer"]


def _fetch(url, data, timeout):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = exc.read().decode("utf-8", "replace")[:300]
        except (OSError, http.client.HTTPException):
            detail = ""
        raise UserError(f"{url}: HTTP {exc.code}: {' '.join(detail.split())}") from None
    except http.client.IncompleteRead as exc:
        raise UserError(f"{url}: the answer ends before its Content-Length ({len(exc.partial)} bytes read)") from None
    except (http.client.BadStatusLine, http.client.LineTooLong) as exc:
        raise UserError(f"{url}: not an HTTP response ({type(exc).__name__})") from None
    except http.client.HTTPException as exc:
        raise UserError(f"{url}: bad HTTP response ({type(exc).__name__}: {exc})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{url}: cannot reach the server ({' '.join(str(reason).split())})") from None
    except ValueError as exc:  # a URL urllib cannot use
        raise UserError(f"{url}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{url}: the answer is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except ValueError:
        raise UserError(f"{url}: the answer is not JSON: {text[:80]!r}") from None


def model_inputs(server: str, model: str, signature="serving_default", timeout=30.0, deadline=None):
    """{input name: dtype ("DT_DOUBLE", "DT_STRING", ...)} of the signature,
    from the model metadata, in name order, or None when the server answers
    without them (an HTTP error, another layout).

    A server that cannot be reached, does not answer in time or answers with
    something that is not JSON is a UserError: the predict call would fail
    the same way, after waiting as long again.
    """
    url = f"{check_server_url(server)}/v1/models/{urllib.parse.quote(model, safe='')}/metadata"
    try:
        metadata = _call(url, timeout=timeout, deadline=deadline)
    except UserError as exc:
        if ": HTTP " in exc.message:
            return None
        raise
    try:
        inputs = metadata["metadata"]["signature_def"]["signature_def"][signature]["inputs"]
        return {name: str(inputs[name].get("dtype", "")) for name in sorted(inputs)}
    except (KeyError, TypeError, AttributeError):
        return None


def predict(server: str, model: str, rows, signature="serving_default", timeout=30.0, deadline=None):
    """Sends the rows; returns the server's `predictions`, one per row."""
    body = encode_request(build_predict_request(rows, signature))
    url = f"{check_server_url(server)}/v1/models/{urllib.parse.quote(model, safe='')}:predict"
    answer = _call(url, body, timeout, deadline)
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if predictions is None:
        raise UserError(f"{url}: unexpected answer: {json.dumps(answer)[:200]}")
    if not isinstance(predictions, list) or len(predictions) != len(rows):
        raise UserError(f"{url}: expected a list of {len(rows)} predictions, one per row. "
                        f"Received: {json.dumps(predictions)[:200]}")
    return predictions
