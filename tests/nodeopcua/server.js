// Tiny node-opcua PLC stand-in for tests: the Foresight tag contract under urn:foresight:line.
// Usage: node server.js <port> <pki-dir>. Prints "READY <endpoint>" once listening; stops on
// SIGTERM/SIGINT or when stdin closes. Types differ on purpose from the asyncua simulator
// (Float limit, Int32 alarm state) so the client's typed writes are exercised.
"use strict";
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { Variant, DataType } = require("node-opcua-variant");

const port = Number(process.argv[2] || 4841);
const pki = process.argv[3] || "./pki";
const NS = "urn:foresight:line";
const TIMEOUT_MS = Number(process.env.HEARTBEAT_TIMEOUT_MS || 2000);

const TAGS = [
  // [name, type, initial value, writable by Foresight]
  ["SpeedLimitPct", DataType.Float, 100, true],
  ["Heartbeat", DataType.UInt32, 0, true],
  ["AlarmState", DataType.Int32, 0, true],
  ["Enable", DataType.Boolean, true, false],
  ["LineState", DataType.Int32, 0, false],
  ["OperatorSetpoint", DataType.Double, 120, false],
  ["ActualSpeed", DataType.Double, 118.5, false],
];

async function main() {
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: pki,
    automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    resourcePath: "/foresight",
    serverCertificateManager,
    allowAnonymous: true,
    buildInfo: { productName: "foresight-nodeopcua-test", buildNumber: "1" },
  });
  await server.initialize();
  const space = server.engine.addressSpace;
  const ns = space.registerNamespace(NS);
  const folder = ns.addFolder(space.rootFolder.objects, { browseName: "Line1" });
  const vars = {};
  for (const [name, dataType, value, writable] of TAGS) {
    vars[name] = ns.addVariable({
      organizedBy: folder,
      browseName: name,
      nodeId: `s=Line1.${name}`,
      dataType,
      accessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      userAccessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      value: new Variant({ dataType, value }),
    });
  }
  // Heartbeat watchdog: SpeedLimitPct back to 100 when Heartbeat stops changing.
  let last = vars.Heartbeat.readValue().value.value;
  let changed = Date.now();
  setInterval(() => {
    const hb = vars.Heartbeat.readValue().value.value;
    if (hb !== last) {
      last = hb;
      changed = Date.now();
    } else if (Date.now() - changed > TIMEOUT_MS) {
      if (vars.SpeedLimitPct.readValue().value.value !== 100) {
        vars.SpeedLimitPct.setValueFromSource(new Variant({ dataType: DataType.Float, value: 100 }));
      }
    }
  }, 100);
  await server.start();
  const endpoint = `opc.tcp://127.0.0.1:${port}/foresight`;
  process.stdout.write(`READY ${endpoint} ns=${ns.index}\n`);
  const stop = async () => {
    await server.shutdown(0);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`node-opcua server failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
