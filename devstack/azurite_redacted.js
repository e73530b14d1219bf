#!/usr/bin/env node
// Runs Azurite (same arguments) with the signatures of SAS tokens blanked out of what it writes to standard output.
// Without --silent, Azurite writes one access-log line per request there (morgan, common format), and a request
// authorised by a SAS carries it in its URL: "...&sig=<signature>". The local stack keeps that log (the functions
// host follows it for new blobs, the benchmark counts operations from it), and no log may hold a usable SAS.
"use strict";

const SIGNATURE = /([?&]sig=)[^&\s"]*/gi;
const write = process.stdout.write.bind(process.stdout);

process.stdout.write = (chunk, ...rest) => {
  const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  return write(text.replace(SIGNATURE, "$1REDACTED"), ...rest);
};

require("azurite/dist/src/azurite.js");
