"""Serving client: rows from a CSV to TF Serving's REST predict API.

Request body (`/v1/models/NAME:predict`, row format):
  {"signature_name": "serving_default", "instances": [{"fare": 12.5, ...}, ...]}
A missing value (empty cell, nan) is sent as the JSON literal NaN, which TF
Serving's REST API accepts and the exported graph imputes. The inputs to send
are read from the model's metadata (`/v1/models/NAME/metadata`) when the
server provides it; otherwise every CSV column is sent.
"""

import csv
import json
import math
import urllib.error
import urllib.request

from normpipe.components.errors import UserError


def read_rows(path: str, columns=None):
    """CSV rows as {column: float} (NaN for missing); `columns` must all exist."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            wanted = list(columns) if columns else list(header)
            absent = [c for c in wanted if c not in header]
            if absent:
                raise UserError(f"{path}: no column(s) {', '.join(absent)} (the model takes {', '.join(wanted)})")
            rows = [_parse_row(path, reader.line_num, row, wanted) for row in reader]
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


def build_predict_request(rows, signature="serving_default") -> dict:
    return {"signature_name": signature, "instances": [dict(row) for row in rows]}


def encode_request(body: dict) -> bytes:
    """JSON with NaN/Infinity literals (TF Serving's REST API reads them)."""
    return json.dumps(body, allow_nan=True).encode("utf-8")


def _call(url, data=None, timeout=30.0):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- the user's server
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise UserError(f"{url}: HTTP {exc.code}: {' '.join(detail.split())}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})") from None


def model_inputs(server: str, model: str, signature="serving_default", timeout=30.0):
    """The signature's input names from the model metadata, or None."""
    try:
        metadata = _call(f"{server.rstrip('/')}/v1/models/{model}/metadata", timeout=timeout)
        inputs = metadata["metadata"]["signature_def"]["signature_def"][signature]["inputs"]
        return sorted(inputs)
    except (UserError, KeyError, TypeError):
        return None


def predict(server: str, model: str, rows, signature="serving_default", timeout=30.0):
    """Sends the rows; returns the server's `predictions` list."""
    body = encode_request(build_predict_request(rows, signature))
    answer = _call(f"{server.rstrip('/')}/v1/models/{model}:predict", body, timeout)
    if "predictions" not in answer:
        raise UserError(f"{server}: unexpected answer: {str(answer)[:200]}")
    return answer["predictions"]
