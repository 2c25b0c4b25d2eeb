"""Locust user for embbench; runs only inside the Locust subprocess (`locust -f` this file).

Settings come from the environment (set by embbench.load.runner):
  EMBBENCH_PAYLOADS   JSON file: list of input texts
  EMBBENCH_PROTOCOL   predict | tei | openai
  EMBBENCH_MODEL      model name sent with OpenAI-style requests
  EMBBENCH_REQUESTS   folder for the raw per-request log (one CSV per Locust process)

Every request is logged raw (epoch start, float milliseconds, status, error kind, bytes) so that
percentiles come from the requests themselves, not from Locust's rounded tables. In Locust's
distributed mode (--processes, or workers on other machines) each worker sends its rows to the
master as a custom message once a second, and the master alone writes the log.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from embbench.load.protocols import request_for

PROTOCOL = os.environ.get("EMBBENCH_PROTOCOL", "predict")
_texts: list[str] = json.loads(Path(os.environ["EMBBENCH_PAYLOADS"]).read_text())
_model = os.environ.get("EMBBENCH_MODEL", "")
REQUESTS = [request_for(PROTOCOL, text, _model) for text in _texts]
_HEADERS = {"Content-Type": "application/json"}
_rows: list[tuple[float, float, int, str, int]] = []
_writer_state: dict[str, Any] = {}
_ROWS_MESSAGE = "embbench_rows"


def _error_kind(status: int, exception: Any) -> str:
    if status == 0 or (exception is not None and status < 400):
        text = f"{type(exception).__name__} {exception}".lower()
        if "timeout" in text or "timed out" in text:
            return "timeout"
        return "connection"
    if status == 429:
        return "429"
    if 400 <= status < 500:
        return "4xx"
    if status >= 500:
        return "5xx"
    return ""


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any = None,
    exception: Any = None,
    start_time: float = 0.0,
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    _rows.append(
        (start_time, response_time, status, _error_kind(status, exception), response_length)
    )


def _flush() -> None:
    if not _rows:
        return
    runner = _writer_state.get("runner")
    if isinstance(runner, WorkerRunner):
        rows = _rows[:]
        del _rows[: len(rows)]
        runner.send_message(_ROWS_MESSAGE, {"rows": [list(row) for row in rows]})
        return
    handle = _writer_state.get("handle")
    if handle is None:
        folder = Path(os.environ["EMBBENCH_REQUESTS"])
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f"requests-{os.getpid()}.csv", "w", newline="")  # noqa: SIM115
        _writer_state["handle"] = handle
        _writer_state["writer"] = csv.writer(handle)
        _writer_state["writer"].writerow(["start", "latency_ms", "status", "error", "bytes"])
    rows = _rows[:]
    del _rows[: len(rows)]
    _writer_state["writer"].writerows(
        (f"{s:.6f}", f"{lat:.3f}", st, err, size) for s, lat, st, err, size in rows
    )
    handle.flush()


def _flush_forever() -> None:
    # Once a second, so that the orchestrator's live view and an interrupted run see the data.
    while True:
        gevent.sleep(1.0)
        _flush()


def _receive_rows(environment: Any, msg: Any, **_: Any) -> None:
    _rows.extend(tuple(row) for row in msg.data["rows"])


@events.init.add_listener
def _start_flusher(environment: Any, **_: Any) -> None:
    _writer_state["runner"] = environment.runner
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(_ROWS_MESSAGE, _receive_rows)
    gevent.spawn(_flush_forever)


@events.test_stop.add_listener
def _flush_at_stop(environment: Any, **_: Any) -> None:
    # A worker is still connected to its master here, not any more when it quits.
    _flush()


@events.quitting.add_listener
def _final_flush(environment: Any, **_: Any) -> None:
    _flush()
    handle = _writer_state.get("handle")
    if handle is not None:
        handle.close()


class EmbeddingUser(FastHttpUser):
    # No think time: each user is one closed-loop client, so concurrency = users.
    wait_time = constant(0)
    network_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))
    connection_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))
    _counter = itertools.count()

    def on_start(self) -> None:
        # Each user walks the payloads from its own offset: all inputs are in flight at once.
        offset = next(self._counter) * 7919
        self._cycle = itertools.islice(itertools.cycle(REQUESTS), offset % len(REQUESTS), None)

    @task
    def embed(self) -> None:
        path, body = next(self._cycle)
        # Bodies are encoded once, up front; FastHttpSession sends bytes as they are.
        self.client.post(path, data=body, headers=_HEADERS, name=path)  # type: ignore[arg-type]
