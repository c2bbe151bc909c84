'use strict';
// Preloaded into NNI's manager (a Node.js process) with NODE_OPTIONS="--require <this file>"; nas/search.py does
// it for every experiment it starts, resumes or views (nas/README.md shows it for nnictl).
//
// NNI 3.0 serves its web UI and REST API with `server.listen(port)`, which binds every interface, with no
// authentication; and the web UI's TensorBoard button runs `tensorboard --bind_all ...`, the same again. Here a
// host-less listen on a TCP port binds the loopback interface instead, and TensorBoard is told to serve loopback.
// Reach the UI from another machine through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host).

const childProcess = require('child_process');
const net = require('net');

const LOOPBACK = '127.0.0.1';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first === undefined || typeof first === 'function') {
    args.unshift(0, LOOPBACK); // listen([callback]): any free port
  } else if (typeof first === 'number' && typeof args[1] !== 'string') {
    args.splice(1, 0, LOOPBACK); // listen(port[, backlog][, callback])
  } else if (first !== null && typeof first === 'object' && 'port' in first && first.host === undefined) {
    args[0] = { ...first, host: LOOPBACK }; // listen({port, ...}[, callback])
  }
  return listen.apply(this, args);
};

const spawn = childProcess.spawn;
childProcess.spawn = function (file, args, ...rest) {
  if (file === 'tensorboard' && Array.isArray(args)) {
    // NNI passes "--bind_all --logdir_spec=..." as one shell word; only the flag is replaced.
    args = args.map((arg) => String(arg).replace('--bind_all', `--host=${LOOPBACK}`));
  }
  return spawn.call(this, file, args, ...rest);
};
