"""The ``foresight bench skab | nab | tep`` sub-commands, added to the ``bench`` sub-parsers."""

from __future__ import annotations

from typing import Any


def register_all(bsub: Any) -> None:
    """Add ``skab``, ``nab`` and ``tep`` (heavy imports wait until a command runs)."""
    from foresight.realdata import nab, skab, tep

    for module in (skab, nab, tep):
        module.register(bsub)
