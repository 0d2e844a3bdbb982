"""What every stage entry (`run_stage`) returns, so that a component is a signature and one call.

A component logs `metrics` as KFP Metrics and hands `outputs` on; the CLI prints
them. The metrics include the stage's cost figures (resumo.run_cost), so no
component merges them itself.

The entry is `run_stage(resolved config, inputs, output location)` in each stage's
module: scrape, distill (its shard step), launch (train), trainjob (train on a
TrainJob), tune_policy (and `run_katib_stage` for Katib), score, judge, report,
promote. Distill's merge step, which has no config of its own, keeps its name:
`distill.merge_stage` is the merge task's entry under the same contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageResult:
    metrics: dict[str, float] = field(default_factory=dict)  # numbers only (KFP Metrics), the cost figures among them
    outputs: dict[str, Any] = field(default_factory=dict)  # what the stage hands on besides its files: the component's return values

    def log_to(self, kfp_metrics) -> None:
        """Log every metric to a KFP `Output[Metrics]`."""
        for name, value in self.metrics.items():
            kfp_metrics.log_metric(name, value)
