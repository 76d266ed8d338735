// Parse an AsyncAPI document with the official parser (@asyncapi/parser) and print its
// diagnostics as JSON: [{severity, code, message, path}], severity 0 = error.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const out = diagnostics.map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path.join("/") }));
console.log(JSON.stringify({ parsed: document !== undefined, diagnostics: out }));
