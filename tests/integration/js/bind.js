// BIND through socks5d with the npm `socks` client.
//
//   node js/bind.js '{"proxyHost":"127.0.0.1","proxyPort":1080,"destHost":"0.0.0.0",
//                    "userId":null,"password":null,"bytes":65536,"timeoutMs":10000}'
//
// Sends BIND, waits for the 'bound' event, connects a peer to the advertised
// address, waits for 'established', then sends `bytes` bytes client -> peer
// and, once they are all in, `bytes` bytes peer -> client. Prints one JSON
// line: {bound, established, peerLocal, clientToPeerOk, peerToClientOk, ...}.
'use strict';
const net = require('net');
const crypto = require('crypto');
const { SocksClient } = require('socks');

const opts = JSON.parse(process.argv[2]);
const size = opts.bytes || 65536;
const upMsg = crypto.randomBytes(size);   // client -> peer
const downMsg = crypto.randomBytes(size); // peer -> client
const result = {};
let peer = null;
let control = null;

function done(code) {
  if (peer) peer.destroy();
  if (control) control.destroy();
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}

function fail(why) {
  result.error = String(why);
  done(1);
}

setTimeout(() => fail('deadline exceeded'), opts.timeoutMs || 10000);

const proxy = { host: opts.proxyHost, port: opts.proxyPort, type: 5 };
if (opts.userId) {
  proxy.userId = opts.userId;
  proxy.password = opts.password;
}
const client = new SocksClient({
  proxy,
  command: 'bind',
  destination: { host: opts.destHost, port: 0 },
  timeout: opts.timeoutMs || 10000,
});

client.on('error', (err) => fail('socks: ' + err.message));

client.on('bound', (info) => {
  result.bound = info.remoteHost;
  peer = net.connect({ host: info.remoteHost.host, port: info.remoteHost.port });
  peer.on('error', (err) => fail('peer: ' + err.message));
  const chunks = [];
  let n = 0;
  peer.on('data', (d) => {
    chunks.push(d);
    n += d.length;
    if (n === size) {
      result.clientToPeerOk = Buffer.concat(chunks).equals(upMsg);
      peer.write(downMsg);
    } else if (n > size) {
      fail('peer got ' + n + ' bytes, expected ' + size);
    }
  });
});

client.on('established', (info) => {
  result.established = info.remoteHost;
  control = info.socket;
  const chunks = [];
  let n = 0;
  control.on('error', (err) => fail('control: ' + err.message));
  control.on('data', (d) => {
    chunks.push(d);
    n += d.length;
    if (n === size) {
      result.peerToClientOk = Buffer.concat(chunks).equals(downMsg);
      result.peerLocal = { host: peer.localAddress, port: peer.localPort };
      done(0);
    } else if (n > size) {
      fail('client got ' + n + ' bytes, expected ' + size);
    }
  });
  control.resume(); // the client library leaves the socket paused
  control.write(upMsg);
});

client.connect();
