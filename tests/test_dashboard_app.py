"""Every dashboard page and control through Streamlit's AppTest, on a real populated store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_data import PASSWORD, password_hash, populate

from foresight.dashboard import auth, feedback, requests
from foresight.dashboard.config import paths
from foresight.dashboard.data import open_store
from foresight.dashboard.ui import ENV

APP = Path(__file__).parent.parent / "dashboards"


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """One recorded line for the read-only checks (the control tests make their own)."""
    return populate(tmp_path_factory.mktemp("line"))


def page(monkeypatch, line, name: str, *extra: str, operator: bool = False) -> AppTest:
    """Run dashboard page ``name`` against ``line`` (logged in as ``ann`` if ``operator``)."""
    over = [*line["overrides"], f'dashboard.users.ann="{password_hash()}"', *extra]
    monkeypatch.setenv(ENV, json.dumps({"preset": "tiny", "overrides": over}))
    at = AppTest.from_file(str(APP / name), default_timeout=60)
    if operator:
        at.session_state["operator"] = auth.login({"ann": password_hash()}, "ann", PASSWORD)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Every text-like element of the page, joined."""
    kinds = ("title", "subheader", "caption", "markdown", "info", "success", "warning", "error")
    return "\n".join(str(e.value) for k in kinds for e in at.get(k))


def login_button(at: AppTest):
    """The login form's submit button."""
    return next(b for b in at.sidebar.button if b.label == "Log in")


def test_overview(monkeypatch, line):
    at = page(monkeypatch, line, "Foresight.py")
    got = {m.label: m.value for m in at.metric}
    assert got == {
        "Alarm state": "normal",
        "Speed limit": "100 %",
        "Slow-downs (24 h)": "1",
        "Drift": "detected",
    }
    assert "Monitor running" in texts(at) and "Last slow-down" in texts(at)


def test_live_trend_state_and_pictures(monkeypatch, line):
    at = page(monkeypatch, line, "pages/1_Live.py")
    assert at.metric[0].value == "normal" and at.metric[3].value == "running"
    t = texts(at)
    assert "Live residual trend" in t and "1200 model steps" in t and "1 slow-down(s)" in t
    imgs = at.get("image")
    assert len(imgs) == 4  # trend figure + frame, prediction, heatmap
    assert [i.captions for i in imgs[1:]] == [
        ["camera"],
        ["model's prediction"],
        ["residual heatmap"],
    ]
    at.sidebar.selectbox(key="live_window").select("24 h").run()
    assert "in the last 24 h" in texts(at)


def test_live_without_frames_or_data(monkeypatch, tmp_path):
    over = [f"store.path={tmp_path / 's.sqlite'}", f"monitor.health_file={tmp_path / 'h.json'}"]
    at = page(monkeypatch, {"overrides": over}, "pages/1_Live.py")
    t = texts(at)
    assert "No frame published yet" in t and "No residuals recorded" in t
    assert at.metric[0].value == "no data" and at.metric[3].value == "stopped"


def test_alarm_log_lists_the_alarm_with_its_clip(monkeypatch, line):
    at = page(monkeypatch, line, "pages/2_Alarms.py")
    df = at.dataframe[0].value
    assert len(df) == 1 and df["duration s"][0] == pytest.approx(10.9)
    assert df["lowest limit %"][0] == 70.0 and df["model"][0].startswith("2026-02")
    assert len(at.get("video")) == 1 and "peak score" in texts(at)
    # not logged in: every control is disabled
    assert at.button(key="ack").disabled
    assert at.radio(key="fb_label").disabled


def test_alarm_controls_after_login(monkeypatch, tmp_path):
    line = populate(tmp_path)
    at = page(monkeypatch, line, "pages/2_Alarms.py", operator=True)
    assert not at.button(key="ack").disabled
    at.button(key="ack").click().run()
    assert "Acknowledged by ann" in texts(at)
    at.radio(key="fb_label").set_value("false_alarm")
    at.text_input(key="fb_note").input("glare from the window")
    next(b for b in at.button if b.label == "Save feedback").click().run()
    assert at.dataframe[0].value["feedback"][0] == "false_alarm"
    with open_store(line["cfg"]) as store:
        fb = feedback.feedback(store, 0, 2**62)[line["start"]]
    assert fb.operator == "ann" and fb.note == "glare from the window"


def test_models_page_and_requests(monkeypatch, tmp_path):
    line = populate(tmp_path)
    rdir = paths(line["cfg"]).requests
    at = page(monkeypatch, line, "pages/3_Models.py")
    assert "Drift detected" in texts(at) and "lighting" in texts(at)
    versions = at.dataframe[1].value
    assert list(versions["running"]) == [True, False] and versions["directory"][1].endswith("v1")
    for key in ("retrain", "rollback", "dry_run_send"):
        assert at.button(key=key).disabled
    at = page(monkeypatch, line, "pages/3_Models.py", operator=True)
    at.text_input(key="retrain_reason").input("lighting changed")
    at.button(key="retrain").click().run()
    at.button(key="rollback").click().run()
    at.toggle(key="dry_run").set_value(True)
    at.button(key="dry_run_send").click().run()
    got = requests.pending(rdir)
    assert [(r.kind, r.operator) for r in got] == [
        ("retrain", "ann"),
        ("rollback", "ann"),
        ("dry_run", "ann"),
    ]
    assert got[0].reason == "lighting changed" and got[1].params["model"].endswith("v1")
    assert got[2].params == {"enabled": True}
    assert len(at.dataframe[2].value) == 3  # the request list on the page
    (taken,) = requests.take(rdir, ("retrain",))
    requests.report_progress(rdir, taken, 0.4, "fine-tuning")
    at.run()
    assert at.get("progress")[0].proto.text.endswith("fine-tuning")


def test_login_form_and_login_only_viewing(monkeypatch, line):
    at = page(monkeypatch, line, "pages/1_Live.py", "dashboard.viewing=login")
    assert "needs an operator login to view" in texts(at) and not at.metric
    at.sidebar.text_input(key="login_user").input("ann")
    at.sidebar.text_input(key="login_password").input("wrong")
    login_button(at).click().run()
    assert "wrong password" in texts(at) and not at.metric
    at.sidebar.text_input(key="login_user").input("ann")
    at.sidebar.text_input(key="login_password").input(PASSWORD)
    login_button(at).click().run()
    assert at.metric and "Operator: **ann**" in texts(at)
    at.sidebar.button(key="logout").click().run()
    assert not at.metric


def test_no_operators_configured_means_view_only(monkeypatch, line):
    monkeypatch.setenv(ENV, json.dumps({"preset": "tiny", "overrides": line["overrides"]}))
    at = AppTest.from_file(str(APP / "pages/3_Models.py"), default_timeout=60).run()
    assert "No operators are configured" in texts(at)
    assert at.button(key="retrain").disabled
