"""Locust users for embbench; runs only inside the Locust subprocess (`locust -f` this file).

Settings come from the environment (set by embbench.load.locust):
  EMBBENCH_PAYLOADS   JSON file: list of input texts
  EMBBENCH_PROTOCOL   predict | tei | openai
  EMBBENCH_MODEL      model name sent with OpenAI-style requests
  EMBBENCH_REQUESTS   folder for the raw per-request log (one CSV per Locust process)
and, for the open loop, from Locust options (`--embbench-rate` etc., below): Locust sends the
master's custom options to every worker with its spawn message, so workers on other machines,
which have none of the orchestrator's files or environment, get them too.

Two user classes; the command line names the one to run:
  EmbeddingUser   closed loop: each user sends its next request when the last one is answered.
  OpenLoopUser    open loop: one per Locust process; requests leave at the times of a seeded
                  schedule (embbench.load.schedule), each process taking a disjoint slice.

Every request is logged raw (epoch start, float milliseconds, status, error kind, bytes,
scheduled epoch, and the server's phases, batch size and request id from its headers: phases.py)
so that percentiles come from the requests themselves, not from Locust's
rounded tables. `start` is when the request was handed to a connection and `latency_ms` runs from
there (service time); `scheduled` is when it was due (= start in the closed loop). Open-loop
arrivals refused by the in-flight cap are logged with status 0 and error "dropped". In Locust's
distributed mode (--processes, or workers on other machines) each worker sends its rows to the
master as a custom message once a second, and the master alone writes the log.

For the correctness check (run/quality.py) each process also keeps a sample of its 200 answers:
the raw body and the index of the input it answered, appended to `responses-<pid>.bin` (workers:
sent to the master like the rows). The sample is every k-th answer, k set each second from the
previous second's count so that about `--embbench-check-rate` are kept per second: all of them
in a small cell, a bounded share in a fast one (an option, so remote workers get the master's).
Nothing is parsed here; the orchestrator compares after the cell, so the check adds a counter
and, for a kept answer, a list append to the hot path.

Why one module of ~390 lines: Locust loads exactly the file given to `-f` (on the master and on
every worker), and this file imports only light modules of load/ (gevent patches everything in
the process); what can live elsewhere already does (protocols.py, schedule.py, answers.py).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore
from gevent.pool import Group
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from embbench.load.answers import encode_record
from embbench.load.phases import RAW_HEADERS, log_fields
from embbench.load.protocols import request_for
from embbench.load.schedule import ARRIVALS, START_LEAD_S, build_schedule, per_process, slice_for
from embbench.results.phases import TIMING_COLUMNS

PROTOCOL = os.environ.get("EMBBENCH_PROTOCOL", "predict")
_texts: list[str] = json.loads(Path(os.environ["EMBBENCH_PAYLOADS"]).read_text())
_model = os.environ.get("EMBBENCH_MODEL", "")
REQUESTS = [request_for(PROTOCOL, text, _model) for text in _texts]
# An input index means something only against the same payload list: a remote worker started
# with another --payload or --seed would have its answers judged against the wrong inputs.
_PAYLOAD_DIGEST = hashlib.sha256(json.dumps(_texts).encode()).hexdigest()
_HEADERS = {"Content-Type": "application/json"}
# A row: start, latency ms, status, error, bytes, scheduled, and the answer's raw timing headers
# (RAW_HEADERS; None without an answer), turned into the log's timing columns only at flush.
_rows: list[tuple[Any, ...]] = []
# Our request ids: the server echoes them (X-Request-Id), so a row can be found in its logs.
_request_ids = itertools.count()
_ID_PREFIX = f"c{os.getpid()}-"
_writer_state: dict[str, Any] = {}
_ROWS_MESSAGE = "embbench_rows"
_KEPT_MESSAGE = "embbench_responses"
# Kept answers: (input index, start epoch, latency ms, body); the sampling state.
_kept: list[tuple[int, float, float, bytes]] = []
_sampling = {"rate": 0, "stride": 1, "seen": 0, "this_second": 0}
_log = logging.getLogger(__name__)


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
    context: Any = None,
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    scheduled = (context or {}).get("scheduled", start_time)
    # The timing headers raw (a few lookups in a dict of lower-cased names); parsed at flush.
    headers = getattr(response, "headers", None)
    raw = [headers.get(name) for name in RAW_HEADERS] if headers else [None] * len(RAW_HEADERS)
    if raw[-1] is None:
        raw[-1] = (context or {}).get("id")  # no answer, or no echo: the id we sent
    _rows.append(
        (
            start_time,
            response_time,
            status,
            _error_kind(status, exception),
            response_length,
            scheduled,
            raw,
        )
    )
    if _sampling["rate"] and status == 200 and exception is None:
        _sampling["this_second"] += 1
        _sampling["seen"] += 1
        index = (context or {}).get("input")
        if index is not None and _sampling["seen"] % _sampling["stride"] == 0:
            _kept.append((index, start_time, response_time, response.content or b""))


def _resample() -> None:
    # Keep about `rate` answers a second: every k-th, k from the last second's answers.
    count, _sampling["this_second"] = _sampling["this_second"], 0
    _sampling["stride"] = max(1, -(-count // max(1, _sampling["rate"])))


def _flush() -> None:
    _flush_kept()
    if not _rows or _writer_state.get("closed"):
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
        _writer_state["writer"].writerow(
            ["start", "latency_ms", "status", "error", "bytes", "scheduled", *TIMING_COLUMNS]
        )
    rows = _rows[:]
    del _rows[: len(rows)]
    _writer_state["writer"].writerows(
        (f"{r[0]:.6f}", f"{r[1]:.3f}", r[2], r[3], r[4], f"{r[5]:.6f}",
         *log_fields(r[6] if len(r) > 6 else None))
        for r in rows
    )  # fmt: skip
    handle.flush()


def _flush_kept() -> None:
    if not _kept or _writer_state.get("closed"):
        return
    kept = _kept[:]
    del _kept[: len(kept)]
    runner = _writer_state.get("runner")
    if isinstance(runner, WorkerRunner):
        runner.send_message(
            _KEPT_MESSAGE, {"payloads": _PAYLOAD_DIGEST, "kept": [list(k) for k in kept]}
        )
        return
    handle = _writer_state.get("kept_handle")
    if handle is None:
        folder = Path(os.environ["EMBBENCH_REQUESTS"])
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f"responses-{os.getpid()}.bin", "wb")  # noqa: SIM115
        _writer_state["kept_handle"] = handle
    handle.write(b"".join(encode_record(i, start, ms, body) for i, start, ms, body in kept))
    handle.flush()


def _flush_forever() -> None:
    # Once a second, so that the orchestrator's live view and an interrupted run see the data.
    while True:
        gevent.sleep(1.0)
        _resample()
        _flush()


def _receive_rows(environment: Any, msg: Any, **_: Any) -> None:
    _rows.extend(tuple(row) for row in msg.data["rows"])


def _receive_kept(environment: Any, msg: Any, **_: Any) -> None:
    if msg.data.get("payloads") != _PAYLOAD_DIGEST:
        if not _writer_state.get("warned"):
            _log.error("a worker has other payloads than the master: its answers go unchecked")
            _writer_state["warned"] = True
        return
    _kept.extend((int(i), float(s), float(ms), bytes(b)) for i, s, ms, b in msg.data["kept"])


@events.init.add_listener
def _start_flusher(environment: Any, **_: Any) -> None:
    _writer_state["runner"] = environment.runner
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(_ROWS_MESSAGE, _receive_rows)
        environment.runner.register_message(_KEPT_MESSAGE, _receive_kept)
    gevent.spawn(_flush_forever)


@events.test_stop.add_listener
def _flush_at_stop(environment: Any, **_: Any) -> None:
    # A worker is still connected to its master here, not any more when it quits.
    _flush()


@events.quitting.add_listener
def _final_flush(environment: Any, **_: Any) -> None:
    # On SIGTERM Locust fires `quitting` before it stops the users: settle the open loop's
    # outstanding requests here, or they would never reach the log.
    for user in list(_open_users):
        user.settle()
    _flush()
    for name in ("handle", "kept_handle"):
        handle = _writer_state.get(name)
        if handle is not None:
            handle.close()
    _writer_state["closed"] = True  # a late flush must not write to a closed file


def _post(client: Any, index: int, context: dict[str, Any]) -> None:
    # Bodies are encoded once, up front; FastHttpSession sends bytes as they are. The context
    # names the input, for the correctness check of the kept answers (and, in the open loop,
    # when the request was due).
    path, body = REQUESTS[index]
    context["id"] = rid = f"{_ID_PREFIX}{next(_request_ids)}"
    headers = {**_HEADERS, "X-Request-Id": rid}
    client.post(path, data=body, headers=headers, name=path, context=context)


class EmbeddingUser(FastHttpUser):
    # No think time: each user is one closed-loop client, so concurrency = users.
    wait_time = constant(0)
    network_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))
    connection_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))
    _counter = itertools.count()

    def on_start(self) -> None:
        # Each user walks the payloads from its own offset: all inputs are in flight at once.
        offset = next(self._counter) * 7919
        indices = itertools.cycle(range(len(REQUESTS)))
        self._cycle = itertools.islice(indices, offset % len(REQUESTS), None)

    @task
    def embed(self) -> None:
        index = next(self._cycle)
        _post(self.client, index, {"input": index})


# -- open loop ---------------------------------------------------------------------------------

_open_users: list[OpenLoopUser] = []


@events.init_command_line_parser.add_listener
def _check_option(parser: Any, **_: Any) -> None:
    parser.add_argument("--embbench-check-rate", type=int, default=0, help="answers kept/s")


@events.test_start.add_listener
def _start_sampling(environment: Any, **_: Any) -> None:
    # On a worker, the master's options have arrived with its spawn message by now.
    options = environment.parsed_options
    _sampling["rate"] = max(0, int(getattr(options, "embbench_check_rate", 0) or 0))


@events.init_command_line_parser.add_listener
def _open_loop_options(parser: Any, **_: Any) -> None:
    parser.add_argument("--embbench-rate", type=float, default=0.0, help="arrivals/s in all")
    parser.add_argument("--embbench-arrival", default="poisson", choices=ARRIVALS)
    parser.add_argument("--embbench-seed", type=int, default=0)
    parser.add_argument("--embbench-schedule-s", type=float, default=0.0)
    parser.add_argument("--embbench-max-inflight", type=int, default=1000)
    parser.add_argument("--embbench-connections", type=int, default=0, help="0: max-inflight")
    # Fixed by the master at test start and sent to every worker with its spawn message.
    parser.add_argument("--embbench-t0", type=float, default=0.0)
    parser.add_argument("--embbench-slices", type=int, default=1)


@events.test_start.add_listener
def _fix_schedule_zero(environment: Any, **_: Any) -> None:
    runner, options = environment.runner, environment.parsed_options
    if options is None or isinstance(runner, WorkerRunner) or options.embbench_rate <= 0:
        return
    # One zero and one slice count for all processes. The master fires test_start before it
    # sends the spawn messages, which carry its options; a lone process reads its own.
    options.embbench_t0 = time.time() + START_LEAD_S
    options.embbench_slices = max(1, int(runner.worker_count))


class OpenLoopUser(FastHttpUser):
    """The open loop of one Locust process: its slice of the schedule, one greenlet per arrival.

    An arrival is sent at its due time whatever the server is doing (no coordinated omission);
    while `cap` arrivals are outstanding, the next one is dropped and logged as such. At most
    `concurrency` connections are open; by default that is the cap, so no arrival ever waits
    for a connection. With fewer connections (`--embbench-connections`, as wrk2's -c) arrivals
    queue in the client, and that wait counts as lateness, not as service time.
    """

    wait_time = constant(0)
    network_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))
    connection_timeout = float(os.environ.get("EMBBENCH_TIMEOUT", "120"))

    def __init__(self, environment: Any) -> None:
        options, runner = environment.parsed_options, environment.runner
        self.count = max(1, int(options.embbench_slices))
        self.index = int(getattr(runner, "worker_index", 0))
        if _open_users or not 0 <= self.index < self.count:
            # A second user in one process (or an index beyond the master's count, a worker that
            # joined late) would send arrivals that another process sends too: it sends none.
            _log.error("open loop: slice %d of %d not sent", self.index, self.count)
            self.due: list[float] = []
        else:
            schedule = build_schedule(
                options.embbench_rate,
                options.embbench_schedule_s,
                options.embbench_arrival,
                options.embbench_seed,
            )
            self.due = slice_for(schedule, self.index, self.count)
        self.t0 = float(options.embbench_t0) or time.time() + START_LEAD_S
        self.cap = per_process(int(options.embbench_max_inflight), self.count)
        connections = int(options.embbench_connections) or int(options.embbench_max_inflight)
        # FastHttpUser sizes its connection pool from this attribute in __init__.
        self.concurrency = min(self.cap, per_process(connections, self.count))
        super().__init__(environment)
        # Taken before the request: Locust's start time (and so service time) then begins once
        # a connection is free, and the wait for it shows as lateness.
        self.connections = BoundedSemaphore(self.concurrency)
        self.requests = Group()
        self.inflight: dict[int, list[float]] = {}  # arrival -> [due epoch, sent epoch or 0]
        self.finished = False
        _open_users.append(self)

    @task
    def run_schedule(self) -> None:
        if self.finished:
            gevent.sleep(3600.0)  # the slice is sent: idle until Locust's run-time stops us
            return
        for k, offset in enumerate(self.due):
            due = self.t0 + offset
            delay = due - time.time()
            gevent.sleep(delay if delay > 0 else 0.0)  # 0: behind schedule, yield and go on
            self._arrive(self.index + k * self.count, due)
        self.requests.join()
        self.finished = True

    def _arrive(self, arrival: int, due: float) -> None:
        if len(self.inflight) >= self.cap:
            _rows.append((time.time(), 0.0, 0, "dropped", 0, due))
            return
        self.inflight[arrival] = [due, 0.0]
        self.requests.spawn(self._send, arrival, due)

    def _send(self, arrival: int, due: float) -> None:
        try:
            with self.connections:
                self.inflight.get(arrival, [0.0, 0.0])[1] = time.time()
                index = arrival % len(REQUESTS)
                _post(self.client, index, {"scheduled": due, "input": index})
        finally:
            self.inflight.pop(arrival, None)

    def settle(self) -> None:
        """Log what is still outstanding as timeouts and cancel it: Locust is stopping, and a
        request it never answered must count against the server, not vanish from the log."""
        now = time.time()
        pending = list(self.inflight.values())
        self.inflight.clear()
        self.requests.kill(block=True)
        for due, sent in pending:
            if sent:
                _rows.append((sent, (now - sent) * 1000.0, 0, "timeout", 0, due))
            else:  # still waiting for a connection
                _rows.append((now, 0.0, 0, "timeout", 0, due))

    def on_stop(self) -> None:
        self.settle()
        if self in _open_users:
            _open_users.remove(self)
