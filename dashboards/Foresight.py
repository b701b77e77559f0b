"""Foresight operators' dashboard: overview. Run with `foresight dashboard [-c line.toml]`."""

from __future__ import annotations

import datetime as dt
import time

import streamlit as st

from foresight.dashboard import data, ui

st.set_page_config(page_title="Foresight", page_icon=":material/visibility:", layout="wide")
ctx = ui.context()
op = ui.sidebar(ctx)

st.title("Foresight")
st.caption(f"Line **{ctx.cfg.line.name}**, store `{ctx.cfg.store.path}`")
live = data.live_state(ctx.store, ctx.paths.health, ctx.dcfg.stale_s)
now_ns = time.time_ns()
day = now_ns - 86400 * 10**9
alarms = data.alarm_episodes(ctx.store, day, now_ns + 1)
handled = data.drift_handled_ns(ctx.paths.requests)
drift = data.drift_status(ctx.store, day, now_ns + 1, handled)

c = st.columns(4)
c[0].metric("Alarm state", live.state or "no data")
c[1].metric(
    "Speed limit", f"{live.speed_limit_pct:.0f} %" if live.speed_limit_pct is not None else "-"
)
c[2].metric("Slow-downs (24 h)", len(alarms))
c[3].metric("Drift", "detected" if drift.active else "none")
if live.stale:
    age = "never" if live.health_age_s is None else f"{live.health_age_s:.0f} s ago"
    st.warning(f"The monitor is not reporting (health file: {age}).")
else:
    h = live.health or {}
    st.success(f"Monitor running, model {h.get('model')}, PLC ok: {h.get('plc_ok')}")
if alarms:
    last = alarms[0]
    when = dt.datetime.fromtimestamp(last.start_ns / 1e9).astimezone()
    st.info(f"Last slow-down {when:%Y-%m-%d %H:%M:%S}, peak score {last.peak_score:.2f}")

st.page_link(
    "pages/1_Live.py", label="Live: trend, frame and heatmap", icon=":material/monitoring:"
)
st.page_link(
    "pages/2_Alarms.py", label="Alarm log, evidence and feedback", icon=":material/notifications:"
)
st.page_link(
    "pages/3_Models.py", label="Models: drift, versions, retrain", icon=":material/model_training:"
)
