"""Streamlit pieces every page shares: the resolved context, the login box and the viewing gate.

``foresight dashboard`` passes the config to the pages in ``ENV`` (JSON: ``path``, ``preset``,
``overrides``), because ``streamlit run`` owns the command line. Tests set the same variable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import streamlit as st

from foresight.dashboard import auth
from foresight.dashboard.config import DashboardConfig, Paths, load_settings, paths
from foresight.store import Store

ENV = "FORESIGHT_DASHBOARD_ARGS"


@dataclass(frozen=True)
class Context:
    """Everything a page needs: the config, the dashboard's own settings, paths and the store."""

    cfg: Any
    dcfg: DashboardConfig
    paths: Paths
    store: Store | None
    store_error: str | None


@st.cache_resource(show_spinner=False)
def _context(args_json: str) -> Context:
    from foresight.dashboard.data import store_or_none

    args = json.loads(args_json or "{}")
    cfg, dcfg = load_settings(args.get("path"), args.get("preset"), args.get("overrides", ()))
    store, err = store_or_none(cfg)
    return Context(cfg, dcfg, paths(cfg, dcfg), store, err)


def context() -> Context:
    """The context of this dashboard process (cached per configuration)."""
    return _context(os.environ.get(ENV, "{}"))


def operator() -> auth.Operator | None:
    """The operator logged in in this browser session, if any."""
    return st.session_state.get("operator")


def sidebar(ctx: Context) -> auth.Operator | None:
    """Login box in the sidebar; stops the page when viewing needs a login and there is none."""
    op = operator()
    with st.sidebar:
        if op is not None:
            st.success(f"Operator: **{op.name}**")
            if st.button("Log out", key="logout"):
                st.session_state.pop("operator", None)
                st.rerun()
        else:
            with st.form("login", clear_on_submit=True):
                st.caption("Operator login (needed for control actions)")
                name = st.text_input("User", key="login_user")
                password = st.text_input("Password", type="password", key="login_password")
                if st.form_submit_button("Log in"):
                    got = auth.login(ctx.dcfg.users, name.strip(), password)
                    if got is None:
                        st.error("Unknown user or wrong password.")
                    else:
                        st.session_state["operator"] = got
                        st.rerun()
            if not ctx.dcfg.users:
                st.caption("No operators are configured (`[dashboard] users`): view only.")
    if ctx.dcfg.viewing == "login" and op is None:
        st.warning("This dashboard needs an operator login to view.")
        st.stop()
    if ctx.store is None:
        st.error(f"The telemetry store cannot be opened: {ctx.store_error}")
        st.stop()
    return op


def needs_login(op: auth.Operator | None) -> str | None:
    """Help text for a disabled control (None when logged in)."""
    return None if op is not None else "Log in as an operator (sidebar) to use this."


#: windows longer than this plot the score only, cached for a minute
LONG_WINDOW_S = 7200.0


@st.cache_data(ttl=60, show_spinner="Reading history...", max_entries=16)
def _long_trend(_store: Store, store_key: str, since_ns: int, until_ns: int, points: int):
    from foresight.dashboard.data import trend

    return trend(_store, since_ns, until_ns, points, horizons=False)


def trend(ctx: Context, window_s: float, now_ns: int) -> tuple[dict[str, Any], int]:
    """The live trend for a window ending now, and the window start (ns). Short windows are
    read fresh with every horizon; long ones score-only, cached, aligned to the minute."""
    from foresight.dashboard.data import trend as read

    since = now_ns - int(window_s * 1e9)
    if window_s <= LONG_WINDOW_S:
        return read(ctx.store, since, now_ns + 1, ctx.dcfg.trend_points), since
    minute = 60 * 10**9
    until = (now_ns // minute + 1) * minute
    since = until - int(window_s * 1e9)
    key = str(ctx.store.spool.path)
    return _long_trend(ctx.store, key, since, until, ctx.dcfg.trend_points), since
