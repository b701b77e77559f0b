"""Live: score and residual per horizon against the alarm levels, state, frame and heatmap."""

from __future__ import annotations

import datetime as dt
import time

import streamlit as st

from foresight.dashboard import data, frames, plots, ui

st.set_page_config(page_title="Foresight: live", layout="wide")
ctx = ui.context()
op = ui.sidebar(ctx)
card = data.read_card_safe(data.model_dir(ctx.cfg))
thr = data.thresholds_of(card)
window = st.sidebar.selectbox("Window", list(data.WINDOWS), index=0, key="live_window")
follow = st.sidebar.toggle("Refresh", value=True, key="live_follow")


@st.fragment(run_every=ctx.dcfg.refresh_s if follow else None)
def live() -> None:
    """State, trend and pictures; reruns on its own every ``refresh_s``."""
    now_ns = time.time_ns()
    series, since = ui.trend(ctx, data.WINDOWS[window], now_ns)
    state = data.live_state(ctx.store, ctx.paths.health, ctx.dcfg.stale_s)
    last = ctx.store.latest("residual")
    c = st.columns(4)
    c[0].metric("Alarm state", state.state or "no data")
    c[1].metric(
        "Speed limit", "-" if state.speed_limit_pct is None else f"{state.speed_limit_pct:.0f} %"
    )
    score = last.fields.get("score") if last else None
    c[2].metric("Score", "-" if score is None else f"{score:.2f}")
    c[3].metric("Monitor", "stopped" if state.stale else "running")
    if thr is None:
        st.caption("The configured model has no calibrated thresholds: levels not drawn.")

    st.subheader("Live residual trend")
    if not series:
        st.info(f"No residuals recorded in the last {window}.")
    else:
        spans = [(a.start_ns, a.end_ns) for a in data.alarm_episodes(ctx.store, since, now_ns + 1)]
        first = int(min(s.time_ns[0] for s in series.values()))
        xlim = (max(since, first - 10**9), now_ns)
        st.pyplot(plots.trend_figure(series, thr, spans, xlim=xlim), clear_figure=True)
        n = int(series["score"].count.sum()) if "score" in series else 0
        more = "" if len(series) > 1 else " (long window: score only)"
        st.caption(f"{n} model steps in the last {window}; {len(spans)} slow-down(s) shaded{more}.")
    z = {k[2:]: v for k, v in (last.fields.items() if last else []) if k.startswith("z_")}
    if z:
        st.caption("Sensor residuals now (robust z)")
        st.bar_chart(z, horizontal=True)

    st.subheader("Frame, prediction and where they differ")
    pic = frames.read_latest(ctx.paths.live)
    if pic is None:
        st.info(f"No frame published yet (the monitor writes `{ctx.paths.live}/latest.npz`).")
        return
    when = pic.meta.get("time")
    stamp = dt.datetime.fromtimestamp(when).astimezone() if when else None
    cols = st.columns(3)
    heat = plots.heat_overlay(pic.frame, pic.heatmap)
    cols[0].image(plots.enlarge(pic.frame), caption="camera", width="stretch")
    cols[1].image(plots.enlarge(pic.predicted), caption="model's prediction", width="stretch")
    cols[2].image(plots.enlarge(heat), caption="residual heatmap", width="stretch")
    note = f"Published {stamp:%H:%M:%S}" if stamp else "Published (time unknown)"
    if "horizon_s" in pic.meta:
        note += f", prediction made {pic.meta['horizon_s']} s ahead"
    st.caption(note)


live()
