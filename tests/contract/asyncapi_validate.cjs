// Validate an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser),
// resolving its file references. Usage: node asyncapi_validate.cjs FILE
// Prints each diagnostic as "severity path: message"; exits 1 on any error, else 0.
"use strict";
const { Parser, fromFile } = require("@asyncapi/parser");

async function main() {
  const file = process.argv[2];
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const names = ["error", "warning", "info", "hint"];
  let errors = 0;
  for (const d of diagnostics) {
    const severity = names[d.severity] || String(d.severity);
    if (d.severity === 0) errors += 1;
    console.log(`${severity} ${(d.path || []).join(".")}: ${d.message} [${d.code}]`);
  }
  if (document === undefined || errors > 0) {
    console.log(`invalid: ${errors} error(s)`);
    process.exit(1);
  }
  console.log(`valid: AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
              `${document.operations().length} operations`);
}

main().catch((err) => { console.log(`failed: ${err && err.stack || err}`); process.exit(2); });
