#!/usr/bin/env node
// Runs Azurite (same arguments) with the signatures of SAS tokens blanked out of what it writes to standard output,
// and with the ETag and Last-Modified of each answer at the end of its access-log lines.
// Without --silent, Azurite writes one access-log line per request there (morgan, "common" format), and a request
// authorised by a SAS carries it in its URL: "...&sig=<signature>". The local stack keeps that log (the functions
// host follows it for new blobs, the benchmark counts operations from it), and no log may hold a usable SAS.
"use strict";

const path = require("path");

const SIGNATURE = /([?&]sig=)[^&\s"]*/gi;
const write = process.stdout.write.bind(process.stdout);

process.stdout.write = (chunk, ...rest) => {
  const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  return write(text.replace(SIGNATURE, "$1REDACTED"), ...rest);
};

// Azurite logs each request with morgan("common"), a named format morgan looks up when the server is built. Defined
// again here (morgan.format, before Azurite loads), "common" keeps its fields and gains the answer's ETag and
// Last-Modified: a line for a blob write then names the version it wrote, so the functions host keys that blob's
// receipt without asking Azurite for the blob's properties. Morgan escapes quotes in values: ETag "0x8D..." is
// logged as \"0x8D...\", "-" when the answer has none.
const azurite = path.dirname(require.resolve("azurite/package.json"));
const morgan = require(require.resolve("morgan", { paths: [azurite] }));
morgan.format(
  "common",
  ':remote-addr - :remote-user [:date[clf]] ":method :url HTTP/:http-version" :status :res[content-length]' +
    ' :res[etag] ":res[last-modified]"',
);

require(path.join(azurite, "dist/src/azurite.js"));
