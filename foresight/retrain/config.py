"""Configuration of ``foresight retrain`` (the ``[retrain]`` table)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetrainConfig(BaseModel):
    """Where versions live, how long a fine-tune may run, and what a candidate must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: str = Field(
        "models", description="versions live in MODELS_DIR/<line>/v0001...; 'current' points at one"
    )
    archive: str | None = Field(
        None, description="footage folder to fine-tune on; none = the monitor's rolling archive"
    )
    regression_dir: str | None = Field(
        None, description="labelled incident clips (labels.json) every candidate must alarm on"
    )
    on_drift: bool = Field(
        False,
        description="when the monitor raises a plant-change drift it queues a retrain on the "
        "footage since the drift (carried out by `foresight retrain --requests DIR`)",
    )
    on_drift_wait_hours: float = Field(
        2.0, ge=0, le=24 * 30, description="footage to collect after the drift before that retrain"
    )
    recent_hours: float | None = Field(
        None,
        gt=0,
        description="fine-tune on the archive's last this many hours only (after a change: the "
        "footage since it); none = all of the archive",
    )
    max_steps: int = Field(300, ge=1, description="fine-tuning steps")
    max_minutes: float | None = Field(30.0, gt=0, description="fine-tuning wall-clock budget")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="newest share of the footage held out for the gate"
    )
    exclude_margin_s: float = Field(
        60.0, ge=0, description="seconds around an operator-marked incident left out of training"
    )
    error_tolerance: float = Field(
        0.05, ge=0, le=10, description="candidate prediction error may exceed current by this share"
    )
    false_alarms_per_shift: float | None = Field(
        None, gt=0, le=10_000, description="gate's false-alarm target; none = alarms' own"
    )
    regression_strict: bool = Field(
        False,
        description="require an alarm on every regression incident, even those the current model "
        "misses (default: only those it catches must still be caught)",
    )
    auto_promote: bool = Field(
        False, description="promote a passing candidate without approval (only when plc.dry_run)"
    )
    keep_versions: int = Field(5, ge=2, le=1000, description="versions kept for rollback")
