"""Alarm log: every slow-down with its duration, peak score, model, evidence clip and feedback."""

from __future__ import annotations

import datetime as dt
import time

import streamlit as st

from foresight.dashboard import data, feedback, frames, plots, ui
from foresight.dashboard.auth import LoginRequired

st.set_page_config(page_title="Foresight: alarms", layout="wide")
ctx = ui.context()
op = ui.sidebar(ctx)
window = st.sidebar.selectbox("Window", list(data.WINDOWS), index=4, key="alarm_window")
now_ns = time.time_ns()
since = now_ns - int(data.WINDOWS[window] * 1e9)
alarms = data.alarm_episodes(ctx.store, since, now_ns + 1)


def when(t_ns: int) -> str:
    """Local wall-clock time of a nanosecond timestamp."""
    return f"{dt.datetime.fromtimestamp(t_ns / 1e9).astimezone():%Y-%m-%d %H:%M:%S}"


st.title("Alarm log")
if not alarms:
    st.info(f"No slow-downs in the last {window}.")
    st.stop()
st.dataframe(
    [
        {
            "time": when(a.start_ns),
            "duration s": round(a.duration_s, 1),
            "ongoing": a.ongoing,
            "peak score": round(a.peak_score, 2),
            "lowest limit %": round(a.min_speed_pct, 1),
            "model": a.model,
            "acknowledged": a.ack[0] if a.ack else "",
            "feedback": a.feedback.label if a.feedback else "",
        }
        for a in alarms
    ],
    hide_index=True,
)

labels = {when(a.start_ns): a for a in alarms}
pick = st.selectbox("Alarm", list(labels), key="alarm_pick")
a = labels[pick]
st.subheader(f"Slow-down at {pick}")
left, right = st.columns([3, 2])
with left:
    pad = 30 * 10**9
    series = data.trend(ctx.store, a.start_ns - pad, a.end_ns + pad, 300)
    thr = data.thresholds_of(data.read_card_safe(data.model_dir(ctx.cfg)))
    if series:
        st.pyplot(plots.trend_figure(series, thr, [(a.start_ns, a.end_ns)]), clear_figure=True)
    took = f"{a.duration_s:.1f} s so far" if a.ongoing else f"{a.duration_s:.1f} s to full speed"
    st.caption(f"{took}, peak score {a.peak_score:.2f}, model {a.model}")
with right:
    clip = frames.clip_for(ctx.paths.clips, a.start_ns)
    if clip is not None:
        st.video(str(clip), format="video/webm")
    else:
        st.info("No evidence clip for this alarm.")

st.markdown("**Operator actions**")
hint = ui.needs_login(op)
c1, c2 = st.columns([1, 3])
with c1:
    if a.ack:
        st.success(f"Acknowledged by {a.ack[0]} at {when(a.ack[1])}")
    if st.button("Acknowledge", key="ack", disabled=op is None, help=hint):
        try:
            feedback.acknowledge(ctx.store, op, a.start_ns)
            st.rerun()
        except LoginRequired as e:
            st.error(str(e))
with c2, st.form("feedback"):
    current = a.feedback.label if a.feedback else "unknown"
    label = st.radio(
        "What was it?",
        feedback.LABELS,
        index=feedback.LABELS.index(current),
        format_func=lambda s: s.replace("_", " "),
        horizontal=True,
        key="fb_label",
        disabled=op is None,
    )
    note = st.text_input("Note", key="fb_note", disabled=op is None)
    if st.form_submit_button("Save feedback", disabled=op is None, help=hint):
        try:
            feedback.record_feedback(ctx.store, op, a.start_ns, label, note)
            st.rerun()
        except LoginRequired as e:
            st.error(str(e))
    if a.feedback:
        st.caption(f"Last verdict: {a.feedback.label} by {a.feedback.operator}")
