"""What a config will cost before it runs: `python -m pipeline.plan --config configs/x.yaml`.

A command-line wrapper over the cost model (tasks.training.cost): prints the runs in total, done and to do,
and the estimated CPU and wall time of those to do. Never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

import luigi.configuration

from pipeline.site import layout
from pipeline.training import TRAINING_RESOURCE
from tasks.core.errors import PipelineError
from tasks.core.experiment import DEFAULT_CONFIG, load_experiment
from tasks.training.cost import plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        config = load_experiment(args.config)[0]
        planned = plan(config, layout())
    except (PipelineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = f"runs: {len(planned.runs)} total, {len(planned.done)} done, {len(planned.to_do)} to do"
    if planned.unknown:
        print(counts)
        print(f"estimated CPU time: unknown ({'; '.join(planned.unknown)}): train one short run of it first")
        return 0
    slots = max(1, luigi.configuration.get_config().getint("resources", TRAINING_RESOURCE, 1))
    print(f"config: {args.config} (experiment {config.experiment})")
    print(f"{counts} ({planned.evaluations_to_do} evaluations to do)")
    print(f"estimated CPU time: {planned.cpu_seconds / 60:.1f} min ({', '.join(planned.sources or ['nothing to do'])})")
    print(f"estimated wall time: {planned.wall_seconds(slots) / 60:.1f} min on {slots} training slot(s)")
    if planned.up_to_max_seconds is not None:
        policy = config.adaptive
        print(
            f"adaptive seeds: these are the {policy.pilot} pilot seeds; the seed plan made from them may add seeds up "
            f"to {policy.max} per entry: at most {planned.up_to_max_seconds / 60:.1f} min of CPU in all "
            f"({planned.up_to_max_seconds / slots / 60:.1f} min of wall time)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
