"""One cell, start to finish: launch the server, probe it, load it, sample it, stop, record.

`CellRunner.run()` always returns a row and never leaves a process behind. This module drives
the cell; run/record.py turns the files it leaves into its summary row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from embbench.config.model import resolve_model, resolve_spec
from embbench.config.options import ServerOptions
from embbench.config.run import RunConfig
from embbench.errors import EmbbenchError, LoadFailedError, ServerStartError
from embbench.load import measure
from embbench.load.locust import WORKER_WAIT_S, LoadProcess, LoadSpec, RequestLog
from embbench.machine.affinity import pin_tree, split_cores
from embbench.machine.host import cpu_count
from embbench.machine.process import LaunchSpec, ServerProcess, free_port
from embbench.machine.sampler import Sample, Sampler, wait_quiet
from embbench.machine.startup import StartupWatch
from embbench.results import folder as results
from embbench.results.columns import Row
from embbench.run import after_window, quality
from embbench.run.agreement import CellAgreement
from embbench.run.model_check import disagreement_causes
from embbench.run.plan import Cell
from embbench.run.probe import judged_as, probe_server, threshold_for
from embbench.run.progress import ProgressListener
from embbench.run.record import first_row, record_cell
from embbench.run.served import Served
from embbench.variants import get_variant


class CellRunner:
    """One cell, start to finish; `run()` always returns a row and never leaves a process."""

    def __init__(
        self,
        config: RunConfig,
        cell: Cell,
        run_dir: Path,
        payloads: list[str],
        progress: ProgressListener,
        tuned: Mapping[str, Any] | None = None,
        served: Served | None = None,
    ) -> None:
        self.config = config
        self.cell = cell
        self.run_dir = run_dir
        self.folder = results.RunFolder(run_dir)
        # What the variant chose for itself once for the run (run.json's "autotune"): launched
        # as recorded, not chosen again.
        self.tuned = tuned
        # The server of this variant and repeat, when the run keeps one up across its levels
        # (run/served.py): started by the first of its cells, used by the others.
        self.served = served
        self.info_text: str | None = None  # the server's /info as it answered
        self.payloads = payloads
        self.progress = progress
        self.options: ServerOptions = cell.run.options
        self.window: tuple[float, float] | None = None
        self.request_rows: list[measure.RequestRow] = []
        self.reference: quality.Vectors | None = None
        self.server_info: dict[str, Any] = {}  # the server's /info, once it answered
        self.verdict: quality.AnswerCheck | None = None
        self.agreement: CellAgreement | None = None  # retrieval agreement (run/agreement.py)
        self.row = first_row(config, cell)

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
            corpus = self.config.corpus_of(self.cell.run)
            if corpus:
                self.agreement = CellAgreement(corpus, str(resolve_model(self.options.model)))
            # Let the machine settle before this cell: from the previous variant's server,
            # stopped, or from this one's previous level, its Locust stopped.
            self.row["quiet_s"], self.row["quiet_cpu_pct"] = wait_quiet()
            url, protocol, server = self._server()
            sampler = Sampler(self._sample_root(server))
            sampler.start()
            load = self._start_load(url, protocol)
            self._pin(load.pid, server=False)
            if self.agreement is not None and not self.config.corpus_after_window:
                self.agreement.start(
                    url, protocol, model=self.row["model"], info=self.server_info,
                    duration_s=self.config.duration,
                    opens=lambda: self.window[0] if self.window is not None else None,
                )  # fmt: skip
            sampler.watch_loadgen(load.pid or 0)
            self._watch(load, server)
            self.row.setdefault("status", results.OK)
            self._corpus_after(url, protocol, load)
            self._after_window(url, protocol, load)
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
            if self.agreement is not None:
                self.agreement.finish(wait=self.row["status"] != results.INTERRUPTED)
            if server is not None and not self._keep_up(server):
                if self.served is not None and self.served.server is server:
                    self.served.stop()  # stops it, and the next level starts its own
                else:
                    server.stop()
        recorded = record_cell(
            self.row, self.cell, self.config, self.folder,
            live_window=self.window, samples=samples, reference=self.reference,
            warn=self.progress.warn,
        )  # fmt: skip
        self.request_rows = recorded.rows  # kept for callers that judge the cell (capacity)
        self.verdict = recorded.verdict
        if self.agreement is not None:
            # After the window by design in capacity probes: nothing to warn about then.
            window = None if self.config.corpus_after_window else self.window
            self.row.update(self.agreement.columns(window, self.progress.warn))
        return self.row

    # -- steps -------------------------------------------------------------------------------

    def _server(self) -> tuple[str, str, ServerProcess | None]:
        """The server this cell measures, ready and probed: the one its variant's earlier level
        left up (run/served.py), or one it starts, asks for /info and probes."""
        served = self.served
        if served is not None and served.live:
            assert served.server is not None
            self.row.update(served.fields)
            self.server_info = dict(served.info)
            if served.info_text is not None:
                self.folder.info(self.cell.name).write_text(served.info_text)
            return served.url, served.protocol, served.server
        if served is not None:
            served.stop()  # gone since (or never started): this cell starts its own
        before = dict(self.row)
        url, protocol, server = self._start_server()
        if server is not None:
            self.row["server_cell"] = self.cell.name
        try:
            self._record_info(url)
            self._probe(url, protocol)
        except BaseException:
            if server is not None:
                server.stop()
            raise
        if served is not None and server is not None:
            learnt = {k: v for k, v in self.row.items() if k not in before or before[k] != v}
            served.keep(server, url, protocol, self.cell.name, learnt)
            served.info, served.info_text = dict(self.server_info), self.info_text
        return url, protocol, server

    def _keep_up(self, server: ServerProcess) -> bool:
        """Whether the server stays up for the variant's next level: only the run's kept one,
        alive, after a cell that neither failed nor was interrupted."""
        served = self.served
        return (
            served is not None
            and served.server is server
            and served.live
            and self.row.get("status") not in (results.FAILED, results.INTERRUPTED)
        )

    def _start_server(self) -> tuple[str, str, ServerProcess | None]:
        if self.config.url is not None:
            self.row.update(
                url=self.config.url, protocol=self.config.protocol, server_processes=None
            )
            return self.config.url.rstrip("/"), self.config.protocol, None
        variant = get_variant(self.cell.run.name)
        port = self.options.port or free_port(self.options.host)
        workdir = self.folder.workdir(self.cell.name)
        spec: LaunchSpec = variant.launch_tuned(self.options, self.tuned, port, workdir)
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
            oversubscribed=bool(
                threads and workers * threads * overlap > (self.config.pin_cores or cpu_count())
            ),
        )
        server = ServerProcess(spec, self.folder.server_log(self.cell.name))
        watch = StartupWatch()
        try:
            watch.start()
            server.start()
            self._pin(server.pid, server=True)
            watch.point(spec.sample_pid or (lambda: server.pid))
            server.wait_ready(self.row["url"], self.config.startup_timeout)
            self._pin(server.pid, server=True)  # what it created while starting, to be sure
            cost = watch.ready()
            self.row.update(
                startup_s=cost.seconds,
                startup_rss_mb_peak=cost.rss_mb_peak or None,
                startup_pss_mb_peak=cost.pss_mb_peak or None,
            )
        except BaseException:
            watch.stop()
            server.stop()
            raise
        return self.row["url"], spec.protocol, server

    def _pin(self, pid: int | None, *, server: bool) -> None:
        """`capacity --cores N`: the server's tree on N cores, the load generator on the
        others where there are any (machine/affinity.py); nothing without --cores."""
        if self.config.pin_cores is None or pid is None:
            return
        mine, rest = split_cores(self.config.pin_cores)
        if server:
            self.row["cores"] = self.config.pin_cores
            pin_tree(pid, mine)
        elif rest:
            pin_tree(pid, rest)

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
            self._judge_by_info()  # no /info: fp32 unless the run says int8
            return
        if reply.status_code == 200:
            self.info_text = reply.text
            self.folder.info(self.cell.name).write_text(reply.text)
            with contextlib.suppress(ValueError):
                info = reply.json()
                self.server_info = info if isinstance(info, dict) else {}
            engine = self.server_info.get("engine")
            if isinstance(engine, dict):  # servers/backends: OpenVINO's compiled precision
                self.row.update(
                    engine_precision=engine.get("inference_precision"),
                    engine_threads=engine.get("engine_threads"),
                )
        self._judge_by_info()

    def _judge_by_info(self) -> None:
        """The threshold a cell is held to, and why: a server this cell launched is judged by
        its options; one driven by URL by what it says of itself (probe.judged_as)."""
        if self.config.url is None:
            self.row["threshold_reason"] = f"launched with --quantize {self.options.quantize}"
            return
        quantize, why = judged_as(self.server_info, self.options.quantize)
        said = self.server_info.get("backend")
        backend = said if isinstance(said, str) and said else self.options.backend
        self.row.update(
            quantize=quantize, backend=backend, threshold_reason=why,
            cosine_threshold=threshold_for(quantize, backend),
        )  # fmt: skip

    def _probe(self, url: str, protocol: str) -> None:
        """The run's own inputs across their lengths, one at a time, before the load."""
        assert self.reference is not None
        picked = quality.probe_indices(self.payloads)
        sentences = [self.payloads[i] for i in picked]
        latencies: list[float] = []
        # Told not to truncate, a server refuses inputs beyond its model's length (413, as
        # TEI does): those are counted, the others judged.
        refused: list[int] | None = None if self.options.truncation else []
        cosine = probe_server(
            url, protocol, self.reference[picked], sentences, model=self.row["model"],
            latencies_ms=latencies, refused=refused,
        )  # fmt: skip
        if refused is not None:
            self.row["probe_refused"] = len(refused)
        if latencies and self.row["startup_s"] is not None:  # a server this cell launched
            self.row["first_request_ms"] = latencies[0]
        self.row.update(probe_cosine_min=cosine, cosine_min=cosine)
        self.row["correct"] = cosine >= self.row["cosine_threshold"]
        if not self.row["correct"]:
            self.row["status"] = results.BAD_EMBEDDINGS
            self.row["failure_reason"] = (
                f"embeddings disagree with sentence-transformers: cosine {cosine:.4f} "
                f"< {self.row['cosine_threshold']}"
            ) + self._causes()

    def _causes(self) -> str:
        """What the server's /info says differs from the model (pooling, truncation, prompt,
        normalisation), so that a failure names its cause where one can be told."""
        try:
            spec = resolve_spec(self.options.model)
        except EmbbenchError:
            return ""
        causes = disagreement_causes(self.server_info, spec, self.options.max_seq_length)
        return f" ({'; '.join(causes)})" if causes else ""

    def _corpus_after(self, url: str, protocol: str, load: LoadProcess) -> None:
        """The retrieval set's documents (and a capacity probe's queries), once Locust has
        stopped, back to back (run/agreement.py says why not inside the window)."""
        if self.agreement is None:
            return
        load.stop()
        served = self.served
        self.agreement.after_window(
            url, protocol, model=self.row["model"], info=self.server_info,
            documents=served.documents if served is not None else None,
        )  # fmt: skip
        if served is not None:
            served.documents = self.agreement.reusable_documents()

    def _after_window(self, url: str, protocol: str, load: LoadProcess) -> None:
        """Batch invariance and the cache check (run/after_window.py), once Locust and the
        retrieval corpus's client have stopped: none of their requests is in the window."""
        if not self.config.server_checks:
            return
        load.stop()
        if self.agreement is not None:
            self.agreement.finish()
        self.row.update(
            after_window.check_server(
                url, protocol, self.payloads, model=self.row["model"], info=self.server_info,
                warn=lambda text: self.progress.warn(f"{self.cell.name}: {text}"),
                seed=self.config.seed,
            )
        )  # fmt: skip

    def _start_load(self, url: str, protocol: str) -> LoadProcess:
        spec = LoadSpec(
            url=url,
            protocol=protocol,
            payloads=self.payloads,
            requests_dir=self.folder.raw(self.cell.name),
            log_path=self.folder.locust_log(self.cell.name),
            processes=self.config.load_processes,
            model=self.row["model"],
            expect_workers=self.config.load_workers,
            master_port=self.config.master_port,
            check_rate=self.config.check_rate,
            **self.cell.loop.spec_fields(self.config, self.cell.repeat),  # users, run_time, ...
        )
        self.load_spec = spec
        load = LoadProcess(spec)
        load.start()
        return load

    def _watch(self, load: LoadProcess, server: ServerProcess | None) -> None:
        """Until the window has closed: open it once steady, stop Locust after it, watch crashes."""
        warmup, duration = self.config.warmup, self.config.duration
        loop = self.cell.loop
        deadline = time.monotonic() + warmup + duration + measure.MAX_FILL_S + 60.0
        if self.config.load_workers:
            deadline += WORKER_WAIT_S
        started = time.monotonic()
        log = RequestLog(self.folder.raw(self.cell.name))
        relayed = self.config.load_processes > 1 or self.config.load_workers > 0
        while load.wait(timeout=1.0) is None:
            if server is not None and server.exited() is not None:
                raise ServerStartError(f"server exited with code {server.exited()} under load")
            if time.monotonic() > deadline:
                raise ServerStartError("Locust did not finish in time; stopped it")
            rows = log.poll()
            now = time.time()
            if self.window is None:
                found = loop.live_window(rows, warmup, duration, time.monotonic() - started, now)
                if found is not None:
                    self.window, steady = found
                    self._pin(load.pid, server=False)  # Locust's --processes, started since
                    if steady is not None:
                        self.row["steady_state"] = steady
            if self.window is not None and loop.over(self.window, now, relayed):
                break  # the loop's window has closed: stop Locust
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
                f"Locust exited with code {code}; see {self.folder.locust_log(self.cell.name)}"
            )


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
