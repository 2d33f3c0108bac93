// Writes the oclif.manifest.json that @adobe/aio-cli-plugin-runtime's package lists but its npm tarball lacks.
// Without it oclif loads all 62 command modules to run one (about 1 s a call); with it, only the one called.
// This is what `oclif manifest` does at the plugin's release, done with the @oclif/core the tool already uses.
const fs = require("fs");
const path = require("path");
const { Plugin } = require("@oclif/core/lib/config/plugin");

const root = path.dirname(require.resolve("@adobe/aio-cli-plugin-runtime/package.json"));
const plugin = new Plugin({ root, type: "core", ignoreManifest: true, errorOnManifestCreate: true });
plugin
  .load()
  .then(() => fs.writeFileSync(path.join(root, "oclif.manifest.json"), JSON.stringify(plugin.manifest)))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
