"""Batch runs: a pipeline over many inputs that survives bad files, resumes, and scales out.

>>> plan = plan_batch(pipeline, ["photos/"], "out/", recursive=True)   # usage errors raise here
>>> summary = BatchSummary(plan.total)
>>> for record in run_batch(plan, LocalEngine(), summary=summary):     # or RayEngine(workers=4)
...     print(record["input"], record["status"])

Modules: :mod:`.inputs` (what the inputs are and their names), :mod:`.outputs` (the naming rule,
writing), :mod:`.resume` (is an output already done?), :mod:`.plan` (all that before any work),
:mod:`.jobs` (one input's work), :mod:`.work` (what jobs do, for any command), :mod:`.engines` / :mod:`.ray_engine` (where jobs run),
:mod:`.run` (records, report, summary).
"""

from .engines import Engine, LocalEngine, make_engine
from .inputs import InputItem, list_inputs
from .jobs import BatchSettings, Job, JobRunner
from .outputs import OutputPlan, assign_outputs
from .plan import BatchPlan, plan_batch
from .run import BatchSummary, ReportWriter, run_batch
from .work import PipelineWork, Runner, Work

__all__ = ["BatchPlan", "BatchSettings", "BatchSummary", "Engine", "InputItem", "Job", "JobRunner", "LocalEngine",
           "OutputPlan", "PipelineWork", "ReportWriter", "Runner", "Work", "assign_outputs", "list_inputs", "make_engine", "plan_batch", "run_batch"]
