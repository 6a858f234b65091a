"""Finalising a run's outputs: every writer ended (or abandoned), every source, video, mask folder
and window closed, whatever happened before.

Each step runs even when an earlier one raised, a second Ctrl-C included: a KeyboardInterrupt is
kept in `pending` (raised by the caller once the summary is made), and any other error is kept
as the failed stream's (with several streams) or the run's, the first one winning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from roadseg.core.errors import RoadsegError

from .progress import stream_state


def run_all(steps: list[Callable[[], None]]) -> None:
    """Run every step in turn, iteratively (a run of many streams has thousands of steps): an
    exception (a KeyboardInterrupt included) raised in one, or between two, does not skip the ones
    after it; the first is raised once all have run."""
    pending: list[BaseException] = []
    i = 0
    while i < len(steps):
        try:
            while i < len(steps):
                i += 1
                steps[i - 1]()
        except BaseException as e:  # noqa: BLE001 - raised below, after the other steps
            pending.append(e)
    if pending:
        raise pending[0]


class Finalizer:
    """Closes the outputs of `streams` (runtime.pipeline's streams: a writer, sinks and a source
    each). `outputs` gets what each stream wrote (for its summary), `error` the run's first error
    and `pending` the KeyboardInterrupts that arrived meanwhile."""

    def __init__(self, streams: Sequence[Any], view: Any = None, error: BaseException | None = None):
        self.streams, self.view = list(streams), view
        self.several = len(self.streams) > 1
        self.outputs: dict[str, dict[str, str]] = {s.name: {} for s in self.streams}
        self.pending: list[BaseException] = []
        self.error = error
        self._ended: dict[str, bool] = {}  # stream name -> its writer ended (its sinks may be closed)

    def close(self, total_stop: Callable[[], None]) -> None:
        """Every step, writers first (a sink is closed only once its writer has ended), then
        `total_stop` (the run's clock)."""
        step = self._step
        steps = [step(functools.partial(self.finish_writer, s), s) for s in self.streams]
        for s in self.streams:
            steps += [step(s.close_source, s), step(s.stats.stop), step(functools.partial(self.close_video, s), s),
                      step(functools.partial(self.close_masks, s), s), step(functools.partial(self.close_window, s), s)]  # fmt: skip
        if self.view is not None:
            steps += [step(functools.partial(self._view_end, s)) for s in self.streams]
        run_all([*steps, step(total_stop)])

    def _step(self, fn: Callable[[], None], s: Any = None) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except KeyboardInterrupt as e:
                self.pending.append(e)
            except BaseException as e:  # noqa: BLE001 - raised after the summary
                if s is not None and self.several:
                    s.error = s.error or e
                else:
                    self.error = self.error or e

        return run

    def finish_writer(self, s: Any) -> None:
        w = s.writer
        self._ended[s.name] = True
        if w is None:
            return
        try:
            w.finish()
        finally:
            self._ended[s.name] = w.settle()
            s.error = s.error or w.error
            if not self._ended[s.name]:
                s.error = s.error or RoadsegError(
                    f"the writer thread of stream {s.name} did not finish within {w.timeout:g} s (a sink is "
                    "blocked: a slow or hung disk or display); its outputs were not finalised"
                )

    def close_video(self, s: Any) -> None:
        if s.video is not None and self._ended.get(s.name, True):
            done = s.video.close()
            if done is not None:
                self.outputs[s.name]["video"] = str(done)

    def close_masks(self, s: Any) -> None:
        if s.masks is not None and self._ended.get(s.name, True):
            s.masks.close()
            if s.masks.frames:
                self.outputs[s.name]["masks"] = f"{s.save_masks}/ ({s.masks.frames} PNG)"

    def close_window(self, s: Any) -> None:
        """The writer destroys the window it made; this covers a writer never started."""
        if s.window is not None and s.writer is None:
            s.window.close()

    def _view_end(self, s: Any) -> None:
        self.view.end(s.name, stream_state(s))
