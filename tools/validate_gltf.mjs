// Validate glTF/GLB files with the Khronos glTF validator (installed by `make gltf-validator`).
// Usage: node tools/validate_gltf.mjs FILE...
// Prints one JSON object {FILE: report, ...} (the validator's own report format: report.issues
// has numErrors, numWarnings, numInfos, numHints and the messages). Exit status: 0 when no file
// has an error, 1 when one has, 2 when the validator is missing or a file cannot be read.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "node", "package.json"));

let validator;
try {
  validator = require("gltf-validator");
} catch {
  console.error("gltf-validator is not installed: run `make gltf-validator`");
  process.exit(2);
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tools/validate_gltf.mjs FILE...");
  process.exit(2);
}

const reports = {};
let errors = 0;
for (const file of files) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (error) {
    console.error(`cannot read ${file}: ${error.message}`);
    process.exit(2);
  }
  const report = await validator.validateBytes(bytes, {
    uri: basename(file),
    maxIssues: 100,
    // a GLB from this project is self-contained: any external reference is an error
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}`)),
  });
  reports[file] = report;
  errors += report.issues.numErrors;
}
console.log(JSON.stringify(reports, null, 2));
process.exit(errors > 0 ? 1 : 0);
