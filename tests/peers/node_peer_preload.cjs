// Preloaded (`node --require`) into the Node peers that tests/peers/launcher.py starts.
//
// 1. Loopback only. server-everything calls Express's `app.listen(PORT)`, which binds
//    every interface; a listen() given a port and no host gets 127.0.0.1 instead.
// 2. Dies with its parent. The launcher holds the child's stdin open; when it reaches
//    EOF (the parent closed it, or died however hard) the process exits, like the
//    Python peers do.
//
// Nothing else changes: the server's own code, logs and ready line are untouched.
"use strict";

const net = require("node:net");

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listen(...args) {
  const port = args[0];
  const isPort =
    typeof port === "number" || (typeof port === "string" && /^\d+$/.test(port));
  if (isPort && typeof args[1] !== "string") {
    args.splice(1, 0, LOOPBACK);
  }
  return originalListen.apply(this, args);
};

process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
