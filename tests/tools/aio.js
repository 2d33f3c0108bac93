// `aio` with only the runtime plugin: what @adobe/aio-cli's bin/run does, with @adobe/aio-cli-plugin-runtime as
// the root plugin (its commands, flags and output unchanged), without aio-cli's other plugins (app templates,
// console, telemetry, update check) and their 500 MB.
const { run, flush, Errors } = require("@oclif/core");

run(process.argv.slice(2), require.resolve("@adobe/aio-cli-plugin-runtime/package.json"))
  .then(flush)
  .catch(Errors.handle);
