"""`surge.png`: dossiers completed per second, per lane and for all, against the baseline."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from bench.figures import Closed


def plot(path: Path, engine: list[Closed], baseline: list[Closed], window: int = 30) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 5))

    def series(closed: list[Closed]) -> tuple[list[float], list[float]]:
        if not closed:
            return [], []
        start = min(c.started for c in closed)
        per_second = Counter(int(c.closed - start) for c in closed)
        end = max(per_second)
        xs = list(range(end + 1))
        ys = [sum(per_second.get(s, 0) for s in range(x - window + 1, x + 1)) / window for x in xs]
        return [float(x) for x in xs], ys

    by_lane: dict[str, list[Closed]] = defaultdict(list)
    for c in engine:
        by_lane[c.lane].append(c)
    start = min((c.started for c in engine), default=0.0)
    for lane, closed in sorted(by_lane.items()):
        shifted = [Closed(lane=lane, started=start, closed=c.closed) for c in closed]
        xs, ys = series(shifted)
        axis.plot(xs, ys, label=f"engine: {lane}")
    xs, ys = series([Closed(lane="all", started=start, closed=c.closed) for c in engine])
    axis.plot(xs, ys, label="engine: all lanes", linewidth=2, color="black")
    if baseline:
        xs, ys = series(baseline)
        axis.plot(xs, ys, label="bare Temporal baseline: all", linestyle="--", color="grey")
    axis.set_xlabel("seconds since the first submission")
    axis.set_ylabel(f"dossiers completed per second ({window} s average)")
    axis.set_title("Surge: completions per lane")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
