"""OPC UA actuator: guarded, typed writes with read-back, a heartbeat, and auto-reconnect.

One asyncua ``Client`` per connection. Node ids are resolved once per connection and every
written value is converted to the node's own data type (read once). A background task
reconnects with exponential backoff (``reconnect_min_s`` .. ``reconnect_max_s``) whenever a
request fails on the transport or asyncua reports the connection lost, then re-asserts the
heartbeat, the alarm state and the last commanded limit. Connection problems never raise out
of ``apply``/``heartbeat``/``read_inputs`` (they report "disconnected"); ``connect`` raises a
one-line ``PlcError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import Client, Node, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509

from foresight.plc.actuator import (
    TOLERANCE_PCT,
    Applied,
    Guard,
    PlcError,
    PlcInputs,
    check_alarm_code,
    describe_failure,
)
from foresight.plc.config import PlcConfig
from foresight.plc.tags import (
    NUMERIC_TYPES,
    READ,
    TAGS,
    WRITTEN,
    as_float,
    convert,
    next_count,
    resolve_node_id,
)

log = logging.getLogger(__name__)

VT = ua.VariantType
#: status codes that mean the session or channel is gone (reconnect), not a refused operation
_CONNECTION_LOST = frozenset(
    "BadConnectionClosed BadSecureChannelClosed BadSecureChannelIdInvalid BadSessionClosed "
    "BadSessionIdInvalid BadSessionNotActivated BadServerNotConnected BadNotConnected "
    "BadShutdown BadTimeout BadCommunicationError BadServerHalted".split()
)
_V = CertificateValidatorOptions
#: what we check on the PLC's certificate (key-usage bits are left out: PLC certificates vary)
_SERVER_CHECKS = _V.TIME_RANGE | _V.URI | _V.TRUSTED | _V.REVOKED | _V.PEER_SERVER


@dataclass
class _Link:
    """One live connection: the client, its resolved nodes and their data types."""

    client: Client
    nodes: dict[str, Node]
    types: dict[str, ua.VariantType]
    ids: dict[str, str]
    beat: int  # last heartbeat value seen or written


class OpcUaActuator:
    """``Actuator`` on an OPC UA PLC; use as ``async with OpcUaActuator(cfg) as plc: ...``."""

    def __init__(self, cfg: PlcConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if cfg.endpoint is None:
            raise PlcError("plc.endpoint is not set: there is no PLC to connect to")
        self._cfg = cfg
        self._ep = cfg.endpoint
        self._guard = Guard.from_config(cfg)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._link: _Link | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._target: float | None = None
        self._alarm: int | None = None
        self._last_t: float | None = None
        self._shadow = 100.0  # dry run: the limit that would be on the PLC
        self._last_reason = ""
        self._warned = False
        #: completed reconnections, and seconds from the loss to the re-asserted limit
        self.reconnects = 0
        self.last_reconnect_s: float | None = None

    @property
    def connected(self) -> bool:
        """True while a session is up."""
        return self._link is not None and not self._lost.is_set()

    @property
    def target(self) -> float | None:
        """The last requested limit (None before the first ``apply``)."""
        return self._target

    async def __aenter__(self) -> OpcUaActuator:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, check security, resolve the tags; raises ``PlcError``."""
        if self._link is not None:
            return
        self._link = await self._open()
        self._lost.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name="plc-reconnect")
        mode = "dry run, writes nothing" if self._cfg.dry_run else "live"
        log.info("PLC %s connected (%s)", self._ep, mode)

    async def close(self) -> None:
        """Stop reconnecting and close the session."""
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        link, self._link = self._link, None
        if link is not None:
            await _disconnect(link.client)

    async def apply(self, limit_pct: float) -> Applied:
        """Make ``limit_pct`` the target and take one guarded step: write, then read back."""
        self._target = float(limit_pct)
        async with self._lock:
            return await self._step()

    async def heartbeat(self) -> bool:
        """Bump ``Heartbeat``, then keep moving towards the target; False if nothing written."""
        async with self._lock:
            link = self._link
            if link is None or self._lost.is_set():
                return False
            beat = next_count(link.beat, link.types["heartbeat"].name)
            wrote = not self._cfg.dry_run and await self._put("heartbeat", beat)
            if wrote:
                link.beat = beat
            if self._target is not None:
                await self._step()
            return wrote

    async def read_inputs(self) -> PlcInputs:
        """Read the plant's tags in one request; ``ok`` False when not connected."""
        link = self._link
        if link is None or self._lost.is_set():
            return PlcInputs.unknown()
        try:
            enable, state, setpoint, speed = await link.client.read_values(
                [link.nodes[k] for k in READ]
            )
        except Exception as exc:
            self._failed(link, exc, "inputs")
            return PlcInputs.unknown()
        line = None if state is None else int(state)
        return PlcInputs(bool(enable), line, as_float(setpoint), as_float(speed), True)

    async def set_alarm_state(self, code: int) -> bool:
        """Write ``AlarmState`` (kept and re-asserted after a reconnect)."""
        self._alarm = check_alarm_code(code)
        if self._cfg.dry_run:
            return False
        async with self._lock:
            return await self._put("alarm_state", self._alarm)

    # ------------------------------------------------------------------ internals
    async def _step(self) -> Applied:
        """One guarded move towards the target (caller holds the lock)."""
        req = self._target if self._target is not None else 100.0
        link = self._link
        if link is None or self._lost.is_set():
            return Applied(req, None, False, None, False, "disconnected")
        lim = link.nodes["speed_limit_pct"]
        try:
            enable, current = await link.client.read_values([link.nodes["enable"], lim])
        except Exception as exc:
            return self._failed(link, exc, "SpeedLimitPct", req)
        found = self._shadow if self._cfg.dry_run else as_float(current)
        now = self._clock()
        tick = self._cfg.heartbeat_s
        elapsed = tick if self._last_t is None else min(now - self._last_t, tick)
        d = self._guard.decide(req, found, elapsed, bool(enable))
        self._note(d.reason, req)
        if d.limit is None or d.reason == "hold":
            return Applied(req, d.limit, False, found, d.limit is not None, d.reason)
        if self._cfg.dry_run:
            self._shadow, self._last_t = d.limit, now
            log.info("PLC %s dry run: would write SpeedLimitPct=%.1f", self._ep, d.limit)
            return Applied(req, d.limit, False, None, False, "dry_run")
        try:
            await self._write(link, "speed_limit_pct", d.limit)
            self._last_t = now  # the rate budget counts from the last change written
            back = as_float(await lim.read_value())
        except Exception as exc:
            return self._failed(link, exc, "SpeedLimitPct", req, d.limit)
        ok = abs(back - d.limit) <= TOLERANCE_PCT * max(1.0, abs(d.limit))
        if not ok:
            log.warning("PLC %s: wrote SpeedLimitPct=%.3f, read back %.3f", self._ep, d.limit, back)
        return Applied(req, d.limit, True, back, ok, d.reason)

    def _note(self, reason: str, req: float) -> None:
        if reason in ("disabled", "invalid") and reason != self._last_reason:
            log.warning("PLC %s: SpeedLimitPct %.1f not written (%s)", self._ep, req, reason)
        self._last_reason = reason

    async def _put(self, field: str, value: float | int) -> bool:
        """Write one tag (caller holds the lock); False when disconnected or refused."""
        link = self._link
        if link is None or self._lost.is_set():
            return False
        try:
            await self._write(link, field, value)
        except Exception as exc:
            self._failed(link, exc, TAGS[field])
            return False
        return True

    async def _write(self, link: _Link, field: str, value: float | int) -> None:
        vtype = link.types[field]
        variant = ua.Variant(convert(value, vtype.name), vtype)
        await link.nodes[field].write_value(ua.DataValue(variant))

    def _failed(
        self,
        link: _Link,
        exc: Exception,
        what: str,
        req: float = math.nan,
        limit: float | None = None,
    ) -> Applied:
        """Sort a failed request into connection loss (reconnect) or a refused operation."""
        name = type(exc).__name__
        status = isinstance(exc, ua.UaStatusCodeError) and name not in _CONNECTION_LOST
        if status or isinstance(exc, (ValueError, TypeError)):
            log.error("PLC %s: %s refused: %s", self._ep, what, name)
            return Applied(req, limit, False, None, False, f"refused: {name}")
        if self._link is link and not self._lost.is_set():
            log.warning("PLC %s: connection lost (%s: %s); reconnecting", self._ep, name, exc)
            self._lost.set()
        return Applied(req, limit, False, None, False, "disconnected")

    async def _supervise(self) -> None:
        """Reconnect with exponential backoff after every loss, then re-assert the outputs."""
        cfg = self._cfg
        while True:
            await self._lost.wait()
            t0 = self._clock()
            async with self._lock:
                old, self._link = self._link, None
            if old is not None:
                await _disconnect(old.client)
            delay = cfg.reconnect_min_s
            while True:
                try:
                    link = await self._open()
                    break
                except PlcError as exc:
                    log.warning("%s; next try in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(2.0 * delay, cfg.reconnect_max_s)
            async with self._lock:
                self._link = link
                self._lost.clear()
                await self._reassert(link)
            self.reconnects += 1
            self.last_reconnect_s = self._clock() - t0
            log.info("PLC %s reconnected in %.2f s", self._ep, self.last_reconnect_s)

    async def _reassert(self, link: _Link) -> None:
        """After a reconnect: heartbeat, alarm state and the last limit (caller holds the lock)."""
        beat = next_count(link.beat, link.types["heartbeat"].name)
        if not self._cfg.dry_run and await self._put("heartbeat", beat):
            link.beat = beat
            if self._alarm is not None:
                await self._put("alarm_state", self._alarm)
        if self._target is not None:
            out = await self._step()
            log.info("PLC %s: re-asserted SpeedLimitPct %s (%s)", self._ep, out.limit, out.reason)

    async def open_session(self, client: Client) -> None:
        """Security, credentials and session for ``client`` (any session to this PLC, e.g. the
        monitor's sensor subscription), or ``PlcError`` saying what is wrong."""
        cfg = self._cfg
        rejected: list[str] = []
        try:
            await self._secure(client, rejected)
            if cfg.username is not None:
                client.set_user(cfg.username)
            if cfg.password is not None:
                client.set_password(cfg.password.get_secret_value())
            await asyncio.wait_for(client.connect(), 2 * cfg.timeout_s)
        except PlcError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            raise PlcError(describe_failure(cfg, exc, rejected)) from None

    async def _open(self) -> _Link:
        """A connected client with resolved tags, or ``PlcError`` saying what is wrong."""
        cfg = self._cfg
        client = Client(self._ep, timeout=cfg.timeout_s)
        client.name = client.description = "Foresight"
        client.session_timeout = 60_000  # ms: a crashed Foresight's session is freed in a minute
        await self.open_session(client)
        try:
            link = await self._resolve(client)
        except Exception as exc:
            await _disconnect(client)
            if isinstance(exc, PlcError):
                raise
            why = f"{type(exc).__name__}: {exc}"
            raise PlcError(f"{self._ep}: cannot read the tags: {why}") from None

        async def lost(exc: Exception) -> None:
            self._failed(link, exc, "session")

        client.connection_lost_callback = lost
        return link

    async def _secure(self, client: Client, rejected: list[str]) -> None:
        """Apply the configured security, or refuse no-security unless allowed."""
        cfg, ep = self._cfg, self._ep
        problem = cfg.security_problem()
        if problem:
            raise PlcError(f"{ep}: {problem}")
        if not cfg.secure:
            if not self._warned:
                log.warning("PLC %s: no security (plc.allow_insecure is set)", ep)
                self._warned = True
            return
        cert = await uacrypto.load_certificate(cfg.certificate)
        try:  # OPC UA: the client's application URI is the one in its certificate
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            client.application_uri = san.get_values_for_type(x509.UniformResourceIdentifier)[0]
        except (x509.ExtensionNotFound, IndexError):
            raise PlcError(f"{ep}: certificate {cfg.certificate} has no application URI") from None
        if cfg.trust_store is not None:
            store = TrustStore([cfg.trust_store], [])
            await store.load()
            validator = CertificateValidator(_SERVER_CHECKS, store)

            async def check(peer: x509.Certificate, app: ua.ApplicationDescription) -> None:
                try:
                    await validator(peer, app)
                except ServiceError as err:
                    rejected.append(ua.StatusCode(err.code).name)
                    raise

            client.certificate_validator = check
        server = str(cfg.server_certificate) if cfg.server_certificate else None
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(cfg.certificate),
            private_key=str(cfg.private_key),
            server_certificate=server,
            mode=getattr(ua.MessageSecurityMode, cfg.security_mode),
        )

    async def _resolve(self, client: Client) -> _Link:
        """Node ids, existence, data types and write access of every tag."""
        cfg, ep = self._cfg, self._ep
        spaces = await client.get_namespace_array()
        index = spaces.index(cfg.namespace_uri) if cfg.namespace_uri in spaces else None
        ids: dict[str, str] = {}
        for field, tag in TAGS.items():
            spec = getattr(cfg.tags, field)
            try:
                ids[field] = resolve_node_id(spec, index, spaces)
            except LookupError:
                raise PlcError(
                    f"{ep}: tag {tag} ({spec}): namespace {cfg.namespace_uri!r} is not on the "
                    f"server (it has {', '.join(spaces)})"
                ) from None
        nodes = {f: client.get_node(nid) for f, nid in ids.items()}
        values = await client.read_attributes(list(nodes.values()))
        types: dict[str, ua.VariantType] = {}
        for (field, node), dv in zip(nodes.items(), values, strict=True):
            where = f"{ep}: tag {TAGS[field]} at node {ids[field]}"
            if not dv.StatusCode.is_good():
                what = "not found" if dv.StatusCode.name == "BadNodeIdUnknown" else "unreadable"
                raise PlcError(f"{where} is {what} ({dv.StatusCode.name})")
            vtype = dv.Value.VariantType if dv.Value is not None else VT.Null
            if vtype == VT.Null:
                vtype = await node.read_data_type_as_variant_type()
            allowed = NUMERIC_TYPES if field in WRITTEN else (*NUMERIC_TYPES, "Boolean")
            if vtype.name not in allowed:
                raise PlcError(f"{where} has data type {vtype.name}; a number is needed")
            types[field] = vtype
        if not cfg.dry_run:
            written = [nodes[f] for f in WRITTEN]
            levels = await client.read_attributes(written, ua.AttributeIds.UserAccessLevel)
            for field, dv in zip(WRITTEN, levels, strict=True):
                if not int(dv.Value.Value or 0) & ua.AccessLevelType.CurrentWrite:
                    raise PlcError(f"{ep}: tag {TAGS[field]} at node {ids[field]} is not writable")
        beat = values[list(TAGS).index("heartbeat")].Value.Value
        return _Link(client, nodes, types, ids, int(beat or 0))


async def _disconnect(client: Client) -> None:
    """Close a client without waiting long or raising (the server may be gone)."""
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception as exc:
        log.debug("disconnect: %s", exc)
        with contextlib.suppress(Exception):
            client.disconnect_socket()
