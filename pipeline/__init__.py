"""The DAG of fmnist-pipeline: Luigi task classes only; the work is in `tasks`.

`luigi --module pipeline FullReport` runs everything. TensorFlow is imported inside the tasks' run()
methods only, so scheduling a finished DAG never loads it.
"""

from luigi.tools.range import RangeDaily  # so that `luigi --module pipeline RangeDaily --of NightlyReport` works

from pipeline import hygiene  # noqa: F401 - registers the temp-file sweep that runs before every task
from pipeline.data import DecodeData, FetchFile, PrepareData, VerifyData
from pipeline.experiment import PlanSeeds, TrainExperiment, TunedRuns, TuneLearningRate
from pipeline.nightly import NightlyHistory, NightlyReport
from pipeline.reporting import ExperimentReport, FullReport
from pipeline.site import pipeline as PipelineSettings  # noqa: N812 - luigi names the class by its section
from pipeline.training import EvaluateRun, NightlyEvaluateRun, NightlyTrainRun, TrainRun

__all__ = [
    "DecodeData",
    "EvaluateRun",
    "ExperimentReport",
    "FetchFile",
    "FullReport",
    "NightlyEvaluateRun",
    "NightlyHistory",
    "NightlyReport",
    "NightlyTrainRun",
    "PipelineSettings",
    "PlanSeeds",
    "PrepareData",
    "RangeDaily",
    "TrainExperiment",
    "TrainRun",
    "TuneLearningRate",
    "TunedRuns",
    "VerifyData",
]
