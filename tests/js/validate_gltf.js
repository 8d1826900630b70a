// Usage: node validate.js FILE.glb -> the Khronos validator's report as JSON on stdout.
const fs = require("fs");
const validator = require("gltf-validator");
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
validator.validateBytes(data, { maxIssues: 100 })
  .then((report) => { console.log(JSON.stringify(report)); })
  .catch((error) => { console.error(String(error)); process.exit(1); });
