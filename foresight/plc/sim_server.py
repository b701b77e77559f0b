"""PLC simulator: an asyncua server with the tag contract, a heartbeat watchdog and a feeder.

The simulator serves every tag of ``foresight.plc.tags`` under ``cfg.namespace_uri`` (explicit
namespaces in ``cfg.tags`` are ignored: the identifiers are served in that one namespace). Each
tick it applies the PLC's logic: ``SpeedLimitPct`` goes back to 100 when ``Heartbeat`` has not
changed for ``cfg.heartbeat_timeout_s``; the limit counts only while ``Enable`` is on; the feeder
runs at min(OperatorSetpoint, SpeedLimitPct % of OperatorSetpoint). With a ``line`` (duck-typed
like ``foresight.sim.line.LineSim``: ``set_speed_limit(pct)``, ``state``, ``operator_setpoint``,
``applied_setpoint``) the limit really slows the simulated feeder and the line's state and speeds
are published. Security: none (tests) or Basic256Sha256 with a server certificate, an optional
trust store for client certificates and an optional user/password list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from foresight.plc.config import PlcConfig
from foresight.plc.tags import TAGS, WRITTEN, line_state_code

log = logging.getLogger(__name__)

#: the simulator's application URI (its certificate must carry it)
SIM_APP_URI = "urn:foresight:plc-sim"
VT = ua.VariantType
#: data type and initial value of every tag on the simulator
SIM_TAGS: dict[str, tuple[ua.VariantType, Any]] = {
    "speed_limit_pct": (VT.Double, 100.0),
    "heartbeat": (VT.UInt32, 0),
    "alarm_state": (VT.Int16, 0),
    "enable": (VT.Boolean, True),
    "line_state": (VT.Int32, 0),
    "operator_setpoint": (VT.Double, 120.0),
    "actual_speed": (VT.Double, 120.0),
}
_CLIENT_CHECKS = (
    CertificateValidatorOptions.TIME_RANGE
    | CertificateValidatorOptions.URI
    | CertificateValidatorOptions.TRUSTED
    | CertificateValidatorOptions.REVOKED
    | CertificateValidatorOptions.PEER_CLIENT
)


@dataclass(frozen=True)
class SimSecurity:
    """Basic256Sha256 for the simulator: its certificate and key, trusted clients, users."""

    certificate: Path
    private_key: Path
    trust_store: Path | None = None  # client certificates accepted (None: any)
    users: Mapping[str, str] = field(default_factory=dict)  # empty: anonymous allowed


class _Users(UserManager):
    """Username/password check against a fixed table."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, **_: Any
    ) -> User | None:
        """The user if the password matches, else None (the server answers access denied)."""
        known = self._users.get(username or "")
        if known is not None and hmac.compare_digest(known, password or ""):
            return User(role=UserRole.User, name=username)
        return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_certificate(
    directory: Path, name: str, app_uri: str, *, server: bool, days: int = 30
) -> tuple[Path, Path]:
    """Write a self-signed OPC UA application certificate (DER) and key (PEM, mode 600)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    alt: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(app_uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {}, alt, use, days=days)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


class PlcSim:
    """The simulated PLC; ``async with PlcSim(cfg) as sim: sim.endpoint``."""

    def __init__(
        self,
        cfg: PlcConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        line: Any = None,
        security: SimSecurity | None = None,
        tick_s: float = 0.05,
    ) -> None:
        self.cfg = cfg
        self.port = port or free_port(host)
        #: where clients connect
        self.endpoint = f"opc.tcp://{host}:{self.port}/foresight/plc"
        self.line = line
        self.security = security
        self.tick_s = tick_s
        #: successful client writes per tag field, and watchdog reverts to 100
        self.writes: Counter[str] = Counter()
        self.reverts = 0
        #: feeder rate the PLC lets through, cartons/min
        self.feeder_rate = 0.0
        self._server: Server | None = None
        self._ids: dict[str, ua.NodeId] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PlcSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space and start listening."""
        sec = self.security
        server = Server(user_manager=_Users(sec.users) if sec and sec.users else None)
        await server.init()
        server.disable_clock()  # no CurrentTime ticking: it also makes stop() wait a second
        server.set_endpoint(self.endpoint)
        server.set_server_name("Foresight PLC simulator")
        await server.set_application_uri(SIM_APP_URI)
        if sec is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await server.load_certificate(str(sec.certificate))
            await server.load_private_key(str(sec.private_key))
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
            if sec.users:
                server.set_identity_tokens([ua.UserNameIdentityToken])
            if sec.trust_store is not None:
                store = TrustStore([sec.trust_store], [])
                await store.load()
                server.set_certificate_validator(CertificateValidator(_CLIENT_CHECKS, store))
        idx = await server.register_namespace(self.cfg.namespace_uri)
        folder = await server.nodes.objects.add_folder(
            ua.NodeId("Line1", idx), ua.QualifiedName("Line1", idx)
        )
        for name, tag in TAGS.items():
            spec = getattr(self.cfg.tags, name).split(";")[-1]
            nid = ua.NodeId.from_string(f"ns={idx};{spec}")
            vtype, init = SIM_TAGS[name]
            bname = ua.QualifiedName(tag, idx)
            node = await folder.add_variable(nid, bname, ua.Variant(init, vtype))
            if name in WRITTEN:
                await node.set_writable()
            self._ids[name] = nid
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)
        await server.start()
        self._server = server
        self._task = asyncio.create_task(self._run(), name="plc-sim")
        log.info("PLC simulator on %s", self.endpoint)

    async def stop(self) -> None:
        """Stop the PLC logic and the server."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            # stop accepting first: asyncua closes its listener last, and a client reconnecting
            # meanwhile would keep stop() waiting for ever
            listener = getattr(getattr(server, "bserver", None), "_server", None)
            if listener is not None:
                listener.close()
            await server.stop()

    def value(self, name: str) -> Any:
        """Current value of a tag, by its ``plc.tags`` field name."""
        assert self._server is not None, "simulator not started"
        return self._server.read_attribute_value(self._ids[name]).Value.Value

    def variant_type(self, name: str) -> str:
        """OPC UA type name of a tag's current value (to check that writes kept the type)."""
        assert self._server is not None, "simulator not started"
        return self._server.read_attribute_value(self._ids[name]).Value.VariantType.name

    async def set(self, name: str, value: Any) -> None:
        """Set a tag from the plant's side (typed like the tag)."""
        assert self._server is not None, "simulator not started"
        vtype = SIM_TAGS[name][0]
        value = bool(value) if vtype == VT.Boolean else value
        value = float(value) if vtype in (VT.Double, VT.Float) else value
        value = int(value) if vtype.name.startswith(("Int", "UInt")) else value
        dv = ua.DataValue(ua.Variant(value, vtype))
        await self._server.write_attribute_value(self._ids[name], dv)

    @property
    def effective_limit_pct(self) -> float:
        """The limit the PLC applies: SpeedLimitPct while Enable is on, else 100."""
        pct = float(self.value("speed_limit_pct")) if self.value("enable") else 100.0
        return min(100.0, max(0.0, pct))

    async def _on_write(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        if not event.is_external:
            return
        names = {nid: name for name, nid in self._ids.items()}
        results = event.response_params or []
        for item, status in zip(event.request_params.NodesToWrite, results, strict=False):
            if item.NodeId in names and status.is_good():
                self.writes[names[item.NodeId]] += 1

    async def _run(self) -> None:
        """The PLC program: watchdog, limit and feeder, every ``tick_s``."""
        last_beat, changed = self.value("heartbeat"), time.monotonic()
        while True:
            now = time.monotonic()
            beat = self.value("heartbeat")
            if beat != last_beat:
                last_beat, changed = beat, now
            late = now - changed > self.cfg.heartbeat_timeout_s
            try:
                if late and float(self.value("speed_limit_pct")) != 100.0:
                    await self.set("speed_limit_pct", 100.0)
                    self.reverts += 1
                    log.warning("PLC simulator: heartbeat lost, SpeedLimitPct back to 100")
                await self._feed(self.effective_limit_pct)
            except Exception:  # a broken line hook must not stop the watchdog
                log.exception("PLC simulator tick failed")
            await asyncio.sleep(self.tick_s)

    async def _feed(self, pct: float) -> None:
        line = self.line
        if line is not None:
            line.set_speed_limit(pct)
            await self.set("line_state", line_state_code(line.state))
            await self.set("operator_setpoint", float(line.operator_setpoint))
            self.feeder_rate = float(line.applied_setpoint)
        else:
            setpoint = float(self.value("operator_setpoint"))
            running = self.value("line_state") == 0
            self.feeder_rate = min(setpoint, setpoint * pct / 100.0) if running else 0.0
        await self.set("actual_speed", self.feeder_rate)


def run_plc_sim(
    cfg: PlcConfig,
    host: str = "127.0.0.1",
    port: int = 4840,
    line: Any = None,
    *,
    security: SimSecurity | None = None,
) -> None:
    """Serve the simulator until Ctrl-C (``foresight plc-sim``); steps ``line`` in real time."""

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with PlcSim(cfg, host, port, line=line, security=security) as sim:
            print(f"PLC simulator on {sim.endpoint} (namespace {cfg.namespace_uri})", flush=True)
            dt = getattr(line, "dt", None) if hasattr(line, "step") else None
            while not stop.is_set():
                if dt:
                    line.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), dt or 3600.0)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
