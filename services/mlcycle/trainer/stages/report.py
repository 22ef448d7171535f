"""The ``report`` stage: the job's HTML page (trials, metrics, plots) in the reports folder."""

from __future__ import annotations

from pathlib import Path

from mlcycle.contracts.encoder import EncoderSummary
from mlcycle.contracts.thresholds import ImpliedFigures, ThresholdSummary
from mlcycle.contracts.training import ModelSummary
from mlcycle.evaluation.behaviour import SuiteResult
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.linear import describe_blend
from mlcycle.trainer.report import SplitResult, write_report
from mlcycle.trainer.search import SearchOutcome
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.stages.evaluate import Evaluated
from mlcycle.trainer.thresholds import describe, with_test


def write_job_report(
    ctx: JobContext,
    outcome: SearchOutcome,
    data: TrainingData,
    evaluated: Evaluated,
    model: ModelSummary | None,
    behaviour: SuiteResult | None = None,
    *,
    encoder: EncoderSummary | None = None,
) -> Path:
    """Write ``<reports dir>/<job id>.html`` and return its path."""
    ctx.recorder.stage("report")
    job, best = ctx.job, outcome.best
    summary: dict[str, object] = {  # row label: the value the report prints
        "job": job.id,
        "label run": data.label_run,
        "transform": f"{data.transform} ({best.params.features})",
        "train / dev / test rows": (
            f"{len(data.train):,} / {len(data.dev):,} / {len(data.test):,}"
        ),
        "selected trial": outcome.best_trial,
        "search time": f"{outcome.seconds:.1f} s",
    }
    if best.blend is not None:
        summary["linear blend"] = describe_blend(best.blend)
    if best.threshold is not None:
        summary.update(threshold_rows(best.threshold, evaluated, data))
    if behaviour is not None:
        worst = behaviour.worst
        summary["behavioural suite"] = (
            f"{behaviour.pass_rate:.1%} of {behaviour.cases} cases passed; "
            f"worst {worst.name} {worst.rate:.1%}"
        )
    if encoder is not None:
        summary["encoder"] = describe_encoder(encoder)
    if model:
        summary["model version"] = f"{model.name} v{model.version}"
        summary["state"] = model.state
        summary["blessing"] = model.reason
    dev = SplitResult("dev", best.dev_probabilities, data.dev.labels, evaluated.dev)
    test = (
        SplitResult("test", evaluated.test_probabilities, data.test.labels, evaluated.test)
        if evaluated.test is not None and evaluated.test_probabilities is not None
        else None
    )
    return write_report(
        ctx.environment.reports_dir / f"{job.id}.html",
        title=f"Training job {job.id}",
        summary=summary,
        trials=[trial.to_document() for trial in outcome.trials],
        metric=ctx.metric,
        dev=dev,
        test=test,
        learning_curves=best.history,
        behaviour=behaviour.summary().model_dump() if behaviour is not None else None,
    )


def threshold_rows(
    chosen: ThresholdSummary, evaluated: Evaluated, data: TrainingData
) -> dict[str, object]:
    """The report's rows on the served threshold: which, why, and what it implies."""
    rows: dict[str, object] = {"served threshold": describe(chosen)}
    if not chosen.get("applied"):
        return rows
    if evaluated.test_probabilities is not None:
        chosen = with_test(chosen, evaluated.test_probabilities, data.test.labels)
    prior = chosen["deployment_prior"]
    for split, implied in chosen["implied"].items():
        rows[f"at a positive rate of {prior:.3g} ({split})"] = _implied(implied)
    instead = chosen.get("instead")
    if instead is not None:
        rows[f"dev best-F1 threshold {instead['threshold']:.4f} instead (dev)"] = _implied(instead)
    return rows


def _implied(figures: ImpliedFigures) -> str:
    precision, low = figures["precision"], figures.get("precision_low")
    shown = "n/a" if precision is None else f"{precision:.3f}"
    if low is not None:
        shown += f" (95% lower bound {low:.3f})"
    return (
        f"precision {shown}, recall {figures['recall']:.3f}, "
        f"{figures['flagged_rate']:.1%} flagged "
        f"(TPR {figures['tpr']:.3f}, FPR {figures['fpr']:.3f})"
    )


def describe_encoder(summary: EncoderSummary) -> str:
    """One line of the encoder variant's cost and whether it was picked."""
    parts = [
        f"{summary.get('model', 'MiniLM')} (max {summary.get('max_length')} tokens, "
        f"{summary.get('fine_tune_layers', 0)} fine-tuned layers)",
        f"{summary.get('train_s_per_10k', 0.0):.1f} s training per 10k comments",
    ]
    if "predict_p50_ms" in summary:
        parts.append(f"predict p50 {summary['predict_p50_ms']:.1f} ms")
    if "reason" in summary:
        picked = "picked" if summary.get("chosen") else "not picked"
        parts.append(f"{picked}: {summary['reason']}")
    return "; ".join(parts)
