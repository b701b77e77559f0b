"""Sensors from the PLC: an OPC UA subscription to the tags that carry the model's channels.

``monitor.sensor_tags`` maps a model sensor channel (``belt_speed``) to a PLC node id; a bare id
(``s=Line1.BeltSpeed``) lives in ``plc.namespace_uri``, as for the PLC's own tags
(``foresight.plc.config``). Endpoint, security, credentials and timings are the PLC's
(``[plc]``): this is a second, read-only session beside the actuator's, so a subscription can
never delay a speed-limit write or the heartbeat, and the actuator's reconnects do not disturb it.

Design choices:

- **Latest value wins**: the server publishes changes at most every ``publish_ms`` (queue size 1
  per item); each camera frame takes a snapshot of the latest values. Nothing queues.
- **asyncua's own supervisor reconnects** (``auto_reconnect``, backoff capped at
  ``plc.reconnect_max_s``) and re-creates the subscription. While the link is down every value
  is NaN: the pipeline's health check reports ``sensor_lost`` after its grace time and the alarm
  engine releases any slow-down, rather than the model scoring stale numbers.
- Connect errors are one-line ``PlcError``\\ s (the actuator's wording); a channel the model does
  not have, or a node the PLC does not hold, is refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
from asyncua import Client, ua

from foresight.errors import InputError
from foresight.monitor.sources import Observation
from foresight.plc.actuator import PlcError
from foresight.plc.config import PlcConfig
from foresight.plc.opcua import OpcUaActuator
from foresight.plc.tags import as_float, resolve_node_id

log = logging.getLogger(__name__)


class PlcSensors:
    """Latest values of the mapped PLC tags, as a row over the model's channels (NaN = none)."""

    def __init__(
        self,
        cfg: PlcConfig,
        channels: Sequence[str],
        tags: Mapping[str, str],
        publish_ms: float = 100.0,
    ) -> None:
        if cfg.endpoint is None:
            raise InputError("monitor.sensor_tags needs plc.endpoint (the PLC to subscribe to)")
        unknown = [c for c in tags if c not in channels]
        if unknown:
            raise InputError(
                f"monitor.sensor_tags: {', '.join(unknown)} not among the model's sensor "
                f"channels ({', '.join(channels) or 'none'})"
            )
        self.cfg, self.channels, self.tags = cfg, tuple(channels), dict(tags)
        self.publish_ms = float(publish_ms)
        self.values = np.full(len(self.channels), np.nan, np.float32)
        self.updates = 0  #: data changes received
        self.losses = 0  #: connection losses seen
        self._index: dict[ua.NodeId, int] = {}
        self._client: Client | None = None

    @property
    def mapped(self) -> np.ndarray:
        """Indices of the channels that come from the PLC."""
        return np.array([self.channels.index(c) for c in self.tags], int)

    async def __aenter__(self) -> PlcSensors:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, check every node, subscribe; raises ``PlcError`` (one line)."""
        cfg, ep = self.cfg, self.cfg.endpoint
        client = Client(
            ep, timeout=cfg.timeout_s, auto_reconnect=True, reconnect_max_delay=cfg.reconnect_max_s
        )
        client.name = client.description = "Foresight sensors"
        await OpcUaActuator(cfg).open_session(client)  # the actuator's security and credentials
        self._client = client
        try:
            await self._subscribe(client)
        except BaseException:
            await self.close()
            raise
        client.connection_lost_callback = self._lost
        log.info("PLC sensors: %d tag(s) subscribed on %s", len(self.tags), ep)

    async def _subscribe(self, client: Client) -> None:
        cfg, ep = self.cfg, self.cfg.endpoint
        spaces = await client.get_namespace_array()
        ns = spaces.index(cfg.namespace_uri) if cfg.namespace_uri in spaces else None
        nodes = []
        for channel, spec in self.tags.items():
            try:
                nid = resolve_node_id(spec, ns, spaces)
            except LookupError as e:
                raise PlcError(f"{ep}: sensor {channel} ({spec}): {e}") from None
            node = client.get_node(nid)
            self._index[node.nodeid] = self.channels.index(channel)
            nodes.append(node)
        found = await client.read_attributes(nodes)
        for (channel, spec), dv in zip(self.tags.items(), found, strict=True):
            if not dv.StatusCode.is_good():
                raise PlcError(f"{ep}: sensor {channel} at node {spec}: {dv.StatusCode.name}")
        sub = await client.create_subscription(self.publish_ms, self)
        await sub.subscribe_data_change(nodes, queuesize=1)

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        """asyncua callback: keep the latest value of one tag."""
        i = self._index.get(node.nodeid)
        if i is not None:
            self.values[i] = as_float(val)
            self.updates += 1

    def status_change_notification(self, status: Any) -> None:
        """asyncua callback: the subscription's status changed (e.g. the server shut down)."""
        log.info("PLC sensors: subscription status %s", status)

    async def _lost(self, exc: Exception) -> None:
        self.values[:] = np.nan
        self.losses += 1
        log.warning("PLC sensors: connection lost (%s); values unknown until reconnected", exc)

    def snapshot(self) -> np.ndarray:
        """The latest row (a copy), NaN where unknown."""
        return self.values.copy()

    async def close(self) -> None:
        """Unsubscribe and disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except Exception as exc:  # the server may be gone already
                log.debug("PLC sensors disconnect: %s", exc)
                with contextlib.suppress(Exception):
                    client.disconnect_socket()


async def with_plc_sensors(
    source: AsyncIterator[Observation], sensors: PlcSensors
) -> AsyncIterator[Observation]:
    """``source`` with the mapped channels of every observation taken from the PLC."""
    idx = sensors.mapped
    async for obs in source:
        row = np.array(obs.sensors, np.float32, copy=True)
        if row.shape != sensors.values.shape:
            row = np.full(sensors.values.shape, math.nan, np.float32)
        row[idx] = sensors.values[idx]
        yield obs._replace(sensors=row)
