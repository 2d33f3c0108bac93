// Drives the local platform with the official OpenWhisk JS client (npm `openwhisk`).
// Reads APIHOST/AUTH from the wskprops file `deployer up` writes; prints one JSON line.
const fs = require("fs");
const openwhisk = require("openwhisk");

const props = Object.fromEntries(
  fs.readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.includes("=")).map((l) => l.split(/=(.*)/s).slice(0, 2))
);
const ow = openwhisk({ apihost: props.APIHOST, api_key: props.AUTH });

(async () => {
  const action = "jscompat";
  await ow.actions.update({ name: action, action: "def main(a):\n    return {'sum': a['x'] + a['y']}\n", kind: "python:3.11" });
  const result = await ow.actions.invoke({ name: action, params: { x: 2, y: 40 }, blocking: true, result: true });
  const listed = await ow.actions.list();
  const started = await ow.actions.invoke({ name: action, params: { x: 1, y: 1 } });
  let record = null;
  for (let i = 0; i < 100 && !record; i++) {
    try { record = await ow.activations.get({ name: started.activationId }); } catch (e) { await new Promise((r) => setTimeout(r, 100)); }
  }
  let notFound = null;
  try { await ow.actions.get({ name: "does-not-exist" }); notFound = "no error"; } catch (e) { notFound = e.statusCode || e.message; }
  await ow.actions.delete({ name: action });
  console.log(JSON.stringify({ result, listed: listed.map((a) => a.name), async: record.response.result, notFound }));
})().catch((e) => { console.error(e.message); process.exit(1); });
