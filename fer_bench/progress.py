"""The grid's progress, the same in every executor: cells finished / running / left, the time left from each
model's mean cell time (a CNN cell takes ~40 times a logistic regression's, so one mean over all cells
misleads), and which worker runs what. On a terminal one live panel (rich) redrawn in place; elsewhere (logs,
CI, pipes) plain lines, one per event."""

from __future__ import annotations

import sys
import time

import numpy as np


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def estimate_remaining_seconds(remaining_models, seconds_by_model: dict[str, list[float]],
                               slots: int = 1) -> float | None:
    """Time left: each remaining cell takes the mean time of the finished cells of its model, spread over
    `slots` cells running at once. None while a remaining model has no finished cell."""
    total = 0.0
    for model_name in remaining_models:
        durations = seconds_by_model.get(model_name)
        if not durations:
            return None
        total += float(np.mean(durations))
    return total / max(slots, 1)


class GridProgress:
    """Told by an executor when a cell starts, finishes or fails; shows it."""

    def __init__(self, cells, seconds_by_model: dict[str, list[float]], *, slots: int = 1, live: bool | None = None,
                 stream=None):
        self.stream = stream or sys.stdout
        self.left = list(cells)  # not finished, not failed
        self.total = len(self.left)
        self.running: dict = {}  # cell -> (where, started)
        self.finished_labels: list[str] = []
        self.failed_labels: list[str] = []
        self.seconds_by_model = {model: list(seconds) for model, seconds in seconds_by_model.items()}
        self.slots = slots
        self.grid_start = time.perf_counter()
        live = self.stream.isatty() if live is None else live
        self._live = self._start_live() if live else None

    # --- events ---------------------------------------------------------------------------------------------

    def started(self, cell, where: str) -> None:
        retry = " (retry)" if cell in self.running else ""
        self.running[cell] = (where, time.perf_counter())
        number = len(self.finished_labels) + len(self.failed_labels) + len(self.running)
        where_text = "" if where == "in-process" else f" on {where}"
        self._line(f"[{number}/{self.total}] {cell.task} / {cell.model} / seed{cell.seed}{where_text}{retry}  "
                   f"(elapsed {format_seconds(self._elapsed())}{self._eta_text()})")

    def finished(self, cell, seconds: float, where: str | None = None) -> None:
        self.running.pop(cell, None)
        self._forget(cell)
        self.finished_labels.append(cell.label)
        self.seconds_by_model.setdefault(cell.model, []).append(seconds)
        self._line(f"      done in {format_seconds(seconds)}: {cell.label}" if self.slots > 1
                   else f"      done in {format_seconds(seconds)}")

    def failed(self, cell, message: str) -> None:
        self.running.pop(cell, None)
        self._forget(cell)
        self.failed_labels.append(cell.label)
        self._line(f"      FAILED {cell.label}: {message}")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --- what is shown --------------------------------------------------------------------------------------

    def _forget(self, cell) -> None:
        if cell in self.left:
            self.left.remove(cell)

    def _elapsed(self) -> float:
        return time.perf_counter() - self.grid_start

    def eta_seconds(self) -> float | None:
        return estimate_remaining_seconds([cell.model for cell in self.left], self.seconds_by_model, self.slots)

    def _eta_text(self) -> str:
        remaining = self.eta_seconds()
        return f", ETA {format_seconds(remaining)}" if remaining is not None else ""

    def _line(self, text: str) -> None:
        if self._live is not None:
            self._live.update(self._panel())
        else:
            print(text, file=self.stream, flush=True)

    def _start_live(self):
        from rich.console import Console
        from rich.live import Live

        live = Live(self._panel(), console=Console(file=self.stream), refresh_per_second=1,
                    get_renderable=self._panel)
        live.start()
        return live

    def _panel(self):
        from rich.table import Table

        table = Table(title=f"cells: {len(self.finished_labels)} finished · {len(self.running)} running · "
                            f"{len(self.left) - len(self.running)} waiting · {len(self.failed_labels)} failed · "
                            f"elapsed {format_seconds(self._elapsed())}{self._eta_text()}",
                      title_justify="left")
        for column in ("cell", "where", "running for"):
            table.add_column(column)
        now = time.perf_counter()
        for cell, (where, started) in self.running.items():
            table.add_row(cell.label, where, format_seconds(now - started))
        for model in dict.fromkeys(cell.model for cell in self.left if cell not in self.running):
            left = [cell for cell in self.left if cell.model == model]
            eta = estimate_remaining_seconds([model] * len(left), self.seconds_by_model, self.slots)
            table.add_row(f"{model}: {len(left)} left", "", f"ETA {format_seconds(eta)}" if eta is not None else "")
        return table
