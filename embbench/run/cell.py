"""One cell, start to finish: launch the server, probe it, load it, sample it, stop, record.

`CellRunner.run()` always returns a row and never leaves a process behind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from embbench.config.model import BUNDLED_MODEL, resolve_model
from embbench.config.run import RunConfig, ServerOptions
from embbench.errors import LoadFailedError, ServerStartError
from embbench.load import answers, measure
from embbench.load.locust import (
    WORKER_WAIT_S,
    LoadProcess,
    LoadSpec,
    RequestLog,
    open_timing,
    read_requests,
)
from embbench.machine.host import cpu_count
from embbench.machine.process import LaunchSpec, ServerProcess, free_port
from embbench.machine.sampler import Sample, Sampler, wait_quiet
from embbench.results import folder as results
from embbench.results.columns import Row
from embbench.run import quality
from embbench.run.plan import Cell
from embbench.run.probe import probe_server, threshold_for
from embbench.run.progress import Progress
from embbench.variants import get_variant


class CellRunner:
    """One cell, start to finish; `run()` always returns a row and never leaves a process."""

    def __init__(
        self, config: RunConfig, cell: Cell, run_dir: Path, payloads: list[str], progress: Progress
    ) -> None:
        self.config = config
        self.cell = cell
        self.run_dir = run_dir
        self.payloads = payloads
        self.progress = progress
        self.options: ServerOptions = cell.run.options
        self.window: tuple[float, float] | None = None
        self.request_rows: list[Any] = []
        self.reference: quality.Vectors | None = None
        self.verdict: quality.Verdict | None = None
        self.row = self._base_row()

    def _base_row(self) -> Row:
        cell, opts = self.cell, self.cell.run.options
        return Row(
            {
                "variant": cell.run.name,
                "label": cell.run.display,
                "cell": cell.name,
                "concurrency": cell.concurrency,
                "load_model": "closed" if cell.rate is None else "open",
                "offered_rps": cell.rate,
                "repeat": cell.repeat,
                "payload": self.config.payload,
                "padding": opts.padding,
                "truncation": opts.truncation,
                "backend": opts.backend,
                "quantize": opts.quantize,
                "max_seq_length": opts.max_seq_length,
                "model": opts.model or BUNDLED_MODEL,
                "cores": cpu_count(),
                "load_processes": self.config.load_processes,
                "cosine_threshold": threshold_for(opts.quantize),
                "requests": 0,
                "failures": 0,
                "started_at": time.time(),
            }
        )

    def run(self) -> Row:
        server: ServerProcess | None = None
        load: LoadProcess | None = None
        sampler: Sampler | None = None
        samples: list[Sample] = []
        try:
            # Before the quiet wait: computing them (once per payload set, then cached) is work
            # the machine must have settled from.
            self.reference = quality.references(
                str(resolve_model(self.options.model)), self.payloads, self.options.max_seq_length
            )
            # The previous cell's server is stopped; let the machine settle before this one.
            self.row["quiet_s"], self.row["quiet_cpu_pct"] = wait_quiet()
            url, protocol, server = self._start_server()
            self._record_info(url)
            self._probe(url, protocol)
            sampler = Sampler(self._sample_root(server))
            sampler.start()
            load = self._start_load(url, protocol)
            sampler.watch_loadgen(load.pid or 0)
            self._watch(load, server)
            self.row.setdefault("status", results.OK)
        except KeyboardInterrupt:
            self.row["status"] = results.INTERRUPTED
            self.row["failure_reason"] = "interrupted"
        except (ServerStartError, LoadFailedError, httpx.HTTPError, ValueError) as exc:
            self.row["status"] = results.FAILED
            self.row["failure_reason"] = _one_line(exc)
        finally:
            if load is not None:
                load.stop()
            if sampler is not None:
                samples = sampler.stop()
            if server is not None:
                server.stop()
        self._record(samples)
        return self.row

    # -- steps -------------------------------------------------------------------------------

    def _start_server(self) -> tuple[str, str, ServerProcess | None]:
        if self.config.url is not None:
            self.row.update(
                url=self.config.url, protocol=self.config.protocol, server_processes=None
            )
            return self.config.url.rstrip("/"), self.config.protocol, None
        variant = get_variant(self.cell.run.name)
        port = self.options.port or free_port(self.options.host)
        workdir = self.run_dir / "logs" / f"{self.cell.name}.work"
        spec: LaunchSpec = variant.launch(self.options, port, workdir)
        info = spec.info
        workers = int(str(info.get("workers", 1)))
        threads = int(str(info.get("threads", 0))) or None
        overlap = int(str(info.get("streams", 1)))
        self.row.update(
            workers=workers,
            threads=threads,
            protocol=spec.protocol,
            url=f"http://{self.options.host}:{port}",
            compute_threads=workers * threads * overlap if threads else None,
            oversubscribed=bool(threads and workers * threads * overlap > cpu_count()),
        )
        server = ServerProcess(spec, self.run_dir / "logs" / f"{self.cell.name}.server.log")
        try:
            server.start()
            server.wait_ready(self.row["url"], self.config.startup_timeout)
        except BaseException:
            server.stop()
            raise
        return self.row["url"], spec.protocol, server

    def _sample_root(self, server: ServerProcess | None) -> int | None:
        if server is None:
            return self.config.pid
        if server.spec.sample_pid is not None:
            pid = server.spec.sample_pid()
            if pid is None:
                raise ServerStartError("the server's container is not running")
            return pid
        return server.pid

    def _record_info(self, url: str) -> None:
        """Keep the server's own account of itself (/info: TEI's and ours) with the logs."""
        try:
            reply = httpx.get(url + "/info", timeout=5.0)
        except httpx.HTTPError:
            return
        if reply.status_code == 200:
            (self.run_dir / "logs" / f"{self.cell.name}.info.json").write_text(reply.text)

    def _probe(self, url: str, protocol: str) -> None:
        """The run's own inputs across their lengths, one at a time, before the load."""
        assert self.reference is not None
        picked = quality.probe_indices(self.payloads)
        sentences = [self.payloads[i] for i in picked]
        cosine = probe_server(
            url, protocol, self.reference[picked], sentences, model=self.row["model"]
        )
        self.row.update(probe_cosine_min=cosine, cosine_min=cosine)
        self.row["correct"] = cosine >= self.row["cosine_threshold"]
        if not self.row["correct"]:
            self.row["status"] = results.BAD_EMBEDDINGS
            self.row["failure_reason"] = (
                f"embeddings disagree with sentence-transformers: cosine {cosine:.4f} "
                f"< {self.row['cosine_threshold']}"
            )

    def _check(self, raw: Path, start: float, end: float) -> None:
        """The answers kept in the window against their own inputs' references: a mismatched
        answer, or one below the threshold as for the probe, makes the cell bad_embeddings."""
        if self.reference is None or not self.config.check_rate:
            return
        kept = answers.in_window(answers.read_kept(raw), start, end) if raw.exists() else []
        threshold = self.row["cosine_threshold"]
        verdict = quality.judge(kept, self.row["protocol"], self.reference, threshold)
        self.verdict = verdict
        self.row.update(verdict.summary())
        if verdict.checked:
            lowest = float(verdict.cosines.min())
            probe = self.row.get("probe_cosine_min")
            self.row["cosine_min"] = lowest if probe is None else min(probe, lowest)
            (self.run_dir / "checks").mkdir(exist_ok=True)
            results.write_rows(
                self.run_dir / "checks" / f"{self.cell.name}.csv",
                quality.CHECK_COLUMNS,
                verdict.rows(kept),
            )
        reason = quality.failure(verdict, self.row.get("cosine_min"), threshold)
        if reason is None:
            return
        self.row["correct"] = False
        if self.row.get("status") == results.OK:
            self.row["status"] = results.BAD_EMBEDDINGS
            self.row["failure_reason"] = reason

    def _start_load(self, url: str, protocol: str) -> LoadProcess:
        # Closed loop: a cap only, the runner stops Locust once its window has closed (_watch).
        run_time = self.config.warmup + self.config.duration + measure.MAX_FILL_S + 10.0
        open_loop: dict[str, Any] = {}
        if self.cell.rate is not None:
            # Open loop: Locust plays its schedule out and stops by itself.
            schedule_s, run_time = open_timing(self.config.warmup, self.config.duration)
            open_loop = dict(
                rate=self.cell.rate,
                arrival=self.config.arrival,
                max_inflight=self.cell.concurrency,
                # Every variant of a repeat gets the same arrivals: a paired comparison.
                seed=self.config.seed + self.cell.repeat,
                schedule_s=schedule_s,
            )
        spec = LoadSpec(
            url=url,
            protocol=protocol,
            users=self.cell.concurrency,
            run_time=run_time,
            payloads=self.payloads,
            requests_dir=self.run_dir / "logs" / f"{self.cell.name}.raw",
            log_path=self.run_dir / "logs" / f"{self.cell.name}.locust.log",
            processes=self.config.load_processes,
            model=self.row["model"],
            expect_workers=self.config.load_workers,
            master_port=self.config.master_port,
            check_rate=self.config.check_rate,
            **open_loop,
        )
        self.load_spec = spec
        load = LoadProcess(spec)
        load.start()
        return load

    def _watch(self, load: LoadProcess, server: ServerProcess | None) -> None:
        """Until the window has closed: open it once steady, stop Locust after it, watch crashes."""
        warmup, duration = self.config.warmup, self.config.duration
        open_loop = self.cell.rate is not None
        deadline = time.monotonic() + warmup + duration + measure.MAX_FILL_S + 60.0
        if self.config.load_workers:
            deadline += WORKER_WAIT_S
        started = time.monotonic()
        log = RequestLog(self.run_dir / "logs" / f"{self.cell.name}.raw")
        while load.wait(timeout=1.0) is None:
            if server is not None and server.exited() is not None:
                raise ServerStartError(f"server exited with code {server.exited()} under load")
            if time.monotonic() > deadline:
                raise ServerStartError("Locust did not finish in time; stopped it")
            rows = log.poll()
            now = time.time()
            if open_loop:
                # The window is fixed by the schedule (measure.open_window); Locust ends it.
                if self.window is None and rows:
                    self.window = measure.open_window(rows, warmup, duration)
            elif self.window is None:
                start = measure.steady_start(rows, warmup, self.cell.concurrency)
                waited = time.monotonic() - started
                if start is None and rows and waited > warmup + measure.MAX_FILL_S:
                    start = now  # never steady: measure what there is, and say so
                    self.row["steady_state"] = False
                if start is not None:
                    self.window = (start, start + duration)
                    self.row.setdefault("steady_state", True)
            # The locustfile flushes its log every second (workers: to the master, which then
            # flushes): wait for the window's last lines.
            if not open_loop and self.window is not None and now > self.window[1] + 2.5:
                break
            recent = _ended_since(rows, now - 3.0)
            ok = [r[1] for r in recent if r[2] == 200]
            measuring = self.window is not None and now >= self.window[0]
            self.progress.cell_live(
                self.cell,
                "measure" if measuring else "warmup",
                now - self.window[0] if self.window is not None and measuring else 0.0,
                duration,
                len(ok) / 3.0 if rows else None,
                float(np.median(ok)) if ok else None,
            )
        if server is not None and server.exited() is not None:
            raise ServerStartError(f"server exited with code {server.exited()} under load")
        code = load.exited()
        if code not in (0, None):
            # Numbers from a load generator that failed describe the failure, not the server.
            raise LoadFailedError(
                f"Locust exited with code {code}; see {self.run_dir / 'logs'}/"
                f"{self.cell.name}.locust.log"
            )

    def _record(self, samples: list[Sample]) -> None:
        raw = self.run_dir / "logs" / f"{self.cell.name}.raw"
        rows = sorted(read_requests(raw)) if raw.exists() else []
        self.request_rows = rows  # kept for callers that judge the cell (capacity probes)
        open_loop = self.cell.rate is not None
        if open_loop and rows:
            start, end = measure.open_window(rows, self.config.warmup, self.config.duration)
        elif self.window is not None:
            start, end = self.window
        else:
            start, end = measure.measurement_window(rows, self.config.warmup, self.config.duration)
        duration = self.config.duration
        if self.row.get("status") == results.INTERRUPTED and rows:
            last = max(r[0] + r[1] / 1000 for r in rows)
            duration = max(0.0, min(end, last) - start)
        window = measure.in_window(rows, start, start + duration) if rows else []
        self.row.update(window_start=start or None, window_end=(start + duration) or None)
        if rows and start:
            self.row["fill_s"] = start - rows[0][0]
        if rows and self.cell.rate is not None:
            self.row.update(measure.summarize_open(rows, start, start + duration, self.cell.rate))
        elif rows:
            self.row.update(measure.summarize_requests(window, duration))
        if self.row.get("status") == results.OK and not self.row.get("requests"):
            # A window with no request in it measured nothing: never an ok cell.
            self.row["status"] = results.FAILED
            self.row["failure_reason"] = "no request completed in the measured window"
        if rows and start:
            self._check(raw, start, start + duration)
        if samples:
            self.row.update(
                measure.summarize_samples(
                    samples, start, start + duration, self.config.load_processes
                )
            )
        if not open_loop:  # Little's law with users = concurrency holds in a closed loop only
            ratio = measure.little_ratio(
                self.row.get("rps", 0.0), self.row.get("latency_mean_ms"), self.cell.concurrency
            )
            self.row["little_ratio"] = ratio
            self.row["little_law_ok"] = measure.little_ok(ratio)
        saturated = measure.saturation_note(self.row)
        if saturated:
            self.progress.warn(f"{self.cell.name}: {saturated}")
        if rows:
            results.write_rows(
                self.run_dir / "requests" / f"{self.cell.name}.csv", results.REQUEST_COLUMNS, rows
            )
        if samples:
            results.write_rows(
                self.run_dir / "samples" / f"{self.cell.name}.csv",
                results.SAMPLE_COLUMNS,
                (
                    (
                        f"{s.time:.3f}",
                        _phase(s.time, start, start + duration),
                        round(s.cpu_pct, 1),
                        round(s.rss_mb, 1),
                        round(s.pss_mb, 1),
                        round(s.uss_mb, 1),
                        s.threads,
                        s.processes,
                        round(s.loadgen_cpu_pct, 1),
                    )
                    for s in samples
                ),
            )
        with contextlib.suppress(OSError):
            for path in [*raw.glob("requests-*.csv"), *raw.glob(answers.RESPONSES_GLOB)]:
                path.unlink()


def _phase(t: float, start: float, end: float) -> str:
    if t < start:
        return "warmup"
    return "measure" if t <= end else "after"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("\n", " | ")[:2000]


def _ended_since(rows: Sequence[Sequence[Any]], since: float) -> list[Any]:
    """Rows that ended after `since`, for the live display: logs are appended about in time
    order, so the scan starts at the end and stops at rows long past (no request takes 2 min)."""
    found = []
    for row in reversed(rows):
        if row[0] < since - 120.0:
            break
        if row[0] + row[1] / 1000 >= since:
            found.append(row)
    return found
