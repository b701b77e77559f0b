"""The operators' dashboard: helpers the Streamlit pages in ``dashboards/`` read and act through,
and the file contracts the monitor and the retrain command share with it."""

from __future__ import annotations
