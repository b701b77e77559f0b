"""Models: drift status, model versions, and retrain / rollback / dry-run requests."""

from __future__ import annotations

import datetime as dt
import time

import streamlit as st

from foresight.dashboard import data, requests, ui
from foresight.dashboard.auth import LoginRequired

st.set_page_config(page_title="Foresight: models", layout="wide")
ctx = ui.context()
op = ui.sidebar(ctx)
hint = ui.needs_login(op)
rdir = ctx.paths.requests
now_ns = time.time_ns()


def when(t_ns: int | None) -> str:
    """Local wall-clock time of a nanosecond timestamp."""
    if t_ns is None:
        return "-"
    return f"{dt.datetime.fromtimestamp(t_ns / 1e9).astimezone():%Y-%m-%d %H:%M:%S}"


def act(fn, *args) -> None:
    """Run one request helper and report the outcome."""
    try:
        req = fn(rdir, op, *args)
        st.toast(f"{req.kind} requested by {req.operator}")
    except (LoginRequired, ValueError) as e:
        st.error(str(e))


st.title("Models")
done = requests.finished(rdir)
handled = data.drift_handled_ns(rdir)
drift = data.drift_status(ctx.store, now_ns - 30 * 86400 * 10**9, now_ns + 1, handled)
st.subheader("Drift")
if drift.active and drift.last is not None:
    d = drift.last
    st.error(
        f"Drift detected at {when(d.time_ns)}: **{d.tags.get('kind', '?')}** "
        f"(statistic {d.fields.get('statistic', float('nan')):.3g}). A plant change is a reason "
        "to retrain; a developing fault is a maintenance job and must not be retrained away."
    )
elif drift.events:
    st.success(f"No drift since the last retrain or rollback ({when(handled)}).")
else:
    st.success("No drift events in the last 30 days.")
if drift.events:
    st.dataframe(
        [
            {"time": when(p.time_ns), "kind": p.tags.get("kind"), **dict(p.fields)}
            for p in drift.events[::-1][:50]
        ],
        hide_index=True,
    )

st.subheader("Model versions")
live = data.live_state(ctx.store, ctx.paths.health, ctx.dcfg.stale_s)
versions = data.model_versions(ctx.cfg, live.model)
if not versions:
    st.info(f"No model directories beside {data.model_dir(ctx.cfg)}.")
st.dataframe(
    [
        {
            "created": m.created,
            "directory": str(m.path),
            "running": m.running,
            "configured": m.configured,
            "alarm level": None if m.thresholds is None else round(m.thresholds.alarm, 3),
            "training steps": m.card.get("training", {}).get("steps"),
            "code": m.code_version,
        }
        for m in versions
    ],
    hide_index=True,
)

st.subheader("Requests")
c1, c2, c3 = st.columns(3)
with c1:
    reason = st.text_input("Why retrain?", key="retrain_reason", disabled=op is None)
    if st.button("Request retrain", key="retrain", type="primary", disabled=op is None, help=hint):
        act(requests.request_retrain, reason)
with c2:
    others = [str(m.path) for m in versions if not m.running]
    target = st.selectbox("Roll back to", others, key="rollback_to", disabled=op is None)
    if st.button("Request rollback", key="rollback", disabled=op is None or not target, help=hint):
        act(requests.request_rollback, target)
with c3:
    shadow = st.toggle(
        "Dry run (write nothing to the PLC)",
        value=ctx.cfg.plc.dry_run,
        key="dry_run",
        disabled=op is None,
    )
    if st.button("Request dry-run change", key="dry_run_send", disabled=op is None, help=hint):
        act(requests.request_dry_run, shadow)

for r in requests.in_progress(rdir):
    st.progress(r.progress or 0.0, text=f"{r.kind} ({r.operator}): {r.message or 'started'}")
queued = requests.pending(rdir)
if queued or done:
    st.dataframe(
        [
            {
                "requested": when(r.time_ns),
                "kind": r.kind,
                "by": r.operator,
                "params": str(r.params or ""),
                "status": "queued" if r.ok is None else ("done" if r.ok else "failed"),
                "message": r.message,
            }
            for r in [*queued[::-1], *done]
        ],
        hide_index=True,
    )
