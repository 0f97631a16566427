"""The project's own exception types.

Every message names the file or key at fault, what was expected, what was found, and what to do next.
"""


class PipelineError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PipelineError):
    """An experiment config or site setting is missing, malformed or impossible."""


class FetchError(PipelineError):
    """A raw data file could not be obtained from any configured source."""


class DataError(PipelineError):
    """A data file (gzip, IDX, Arrow cache) is corrupt, truncated or inconsistent."""


class TrainingError(PipelineError):
    """Training could not run (not a divergence: that is a recorded outcome, not an error)."""


class PluginFault(TrainingError):
    """An optimizer plugin's own code failed while its optimizer was built (import, factory, return type).

    Training records it in the run's run.json as status "failed" (the same code fails the same way), so
    the other runs and the report go on; the report marks the run failed with this message."""


class EvaluationError(PipelineError):
    """A trained run could not be restored or scored."""


class ReportError(PipelineError):
    """The comparison report could not be built from the runs' results."""


class StorageError(PipelineError):
    """The artifacts root cannot be written (permissions, full disk)."""


class RunFolderError(PipelineError):
    """A run folder does not hold what it should: a file is missing, unreadable, of another run or unsafe."""
