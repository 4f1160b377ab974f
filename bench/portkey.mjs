// Starts the Portkey gateway (npm @portkey-ai/gateway, installed into
// bench/node_modules by bench/run.sh) on 127.0.0.1 only. Its start-server.js
// listens on every interface (port from --port=N); the benchmark must stay on
// loopback, so listen() is given the loopback host before the package loads.
//   node bench/portkey.mjs --port=30031 --headless
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  else if (args[0] && typeof args[0] === 'object' && !args[0].host) args[0] = { ...args[0], host: '127.0.0.1' };
  return listen.apply(this, args);
};
await import('./node_modules/@portkey-ai/gateway/build/start-server.js');
