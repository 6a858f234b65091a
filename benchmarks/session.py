"""The harness's side of a row's worker (worker.py): start it, time it in rounds, finish it.

`roadseg bench --rounds R` keeps every row's worker loaded and times the rows in R interleaved
rounds, so that a machine whose speed drifts (a shared VM, a thermally throttled board) slows every
row alike instead of whichever row was running at the time. With one round each row runs start to
finish before the next starts, and only one model is loaded at a time.

A session never raises: a failure (the worker's error, a crash, a timeout) is kept and comes back
from `finish` as {"error": ...}, so one row's failure never stops the others.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from .worker import Job, RowSession, error_line, job_dict


class InProcess:
    """The row in this interpreter (BenchConfig.isolate=False: tests, debugging)."""

    def __init__(self, job: Job) -> None:
        self.error: str | None = None
        self.session: RowSession | None = None
        try:
            self.session = RowSession(job)
        except Exception as e:  # noqa: BLE001 - the row fails, the benchmark goes on
            self.error = error_line(e)

    def time(self, count: int) -> None:
        if self.session is None:
            return
        try:
            self.session.time(count)
        except Exception as e:  # noqa: BLE001
            self.error = error_line(e)
            self.close()

    def finish(self) -> dict:
        if self.session is None:
            return {"error": self.error}
        try:
            return self.session.finish()
        except Exception as e:  # noqa: BLE001
            return {"error": error_line(e)}
        finally:
            self.close()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


class Worker:
    """The row in a worker process of its own, driven line by line (worker.py's protocol); each wait
    for a reply (loading, every round, finishing) is bounded by `timeout_s`."""

    def __init__(self, job: Job, work: Path, timeout_s: float) -> None:
        self.timeout_s, self.error = timeout_s, None
        job_file, self.result_file = work / f"{job.row}.job.json", work / f"{job.row}.result.json"
        self.log = work / f"{job.row}.log"
        job_file.write_text(json.dumps(job_dict(job)))
        self.result_file.unlink(missing_ok=True)
        self.proc: subprocess.Popen | None = None
        read_fd, write_fd = os.pipe()
        self.replies = os.fdopen(read_fd)
        try:
            with open(self.log, "w") as log:
                cmd = [sys.executable, "-m", "roadseg.benchmarks.worker", str(job_file), str(self.result_file), str(write_fd)]
                self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,), text=True)
        except OSError as e:
            self.error = f"could not start the worker: {e}"
        finally:
            os.close(write_fd)
        self._expect("ready")

    def _expect(self, word: str) -> None:
        if self.error is not None or self.proc is None:
            return
        ready, _, _ = select.select([self.replies], [], [], self.timeout_s)
        line = self.replies.readline().strip() if ready else None
        if line == word:
            return
        if line is None:
            self.proc.kill()
            self.error = f"timed out after {self.timeout_s:.0f} s"
        else:  # "done" early (the worker's error is in the result file) or nothing: it died
            self.error = self._outcome().get("error") or f"worker replied {line!r} instead of {word!r}"

    def _outcome(self) -> dict:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            return json.loads(self.result_file.read_text())
        except (OSError, ValueError):  # none, or half-written by a worker that died
            pass
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()] if self.log.is_file() else []
        return {"error": f"worker exited with code {self.proc.returncode}: {(lines[-1:] or ['no output'])[0][:300]}"}

    def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died: _expect reads why
            pass

    def time(self, count: int) -> None:
        if self.error is None:
            self._send(f"time {count}")
            self._expect("ok")

    def finish(self) -> dict:
        try:
            if self.error is not None:
                return {"error": self.error}
            self._send("finish")
            self._expect("done")
            return {"error": self.error} if self.error is not None else self._outcome()
        finally:
            self.close()

    def close(self) -> None:
        """Ends the worker (killed if still running) and closes its pipes; safe to call twice."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:  # a command still buffered for a worker that died
                    pass
        self.replies.close()


def rounds(total: int, count: int) -> list[int]:
    """`total` timed runs split into `count` rounds as evenly as they go (earlier rounds one more)."""
    return [total // count + (1 if i < total % count else 0) for i in range(count)]
