// UDP ASSOCIATE through socks5d with the npm `socks` client.
//
//   node js/associate.js '{"proxyHost":"127.0.0.1","proxyPort":1080,"family":4,
//                         "targetHost":"127.0.0.1","targetPort":7,"namePort":false,
//                         "userId":null,"password":null,"count":3,"timeoutMs":10000}'
//
// Opens the association, then sends `count` datagrams (SocksClient.createUDPFrame)
// one at a time to the target through the relay, each answered before the
// next. Replies are parsed with SocksClient.parseUDPFrame. Prints one JSON
// line: {relay, replies: [{host, port, frameNumber, ok}], ...}.
'use strict';
const dgram = require('dgram');
const crypto = require('crypto');
const { SocksClient } = require('socks');

const opts = JSON.parse(process.argv[2]);
const count = opts.count || 3;
const local = opts.family === 6 ? '::1' : '127.0.0.1';
const result = { replies: [] };
const udp = dgram.createSocket(opts.family === 6 ? 'udp6' : 'udp4');
let control = null;

function done(code) {
  if (control) control.destroy();
  udp.close();
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}

function fail(why) {
  result.error = String(why);
  done(1);
}

setTimeout(() => fail('deadline exceeded'), opts.timeoutMs || 10000);
udp.on('error', (err) => fail('udp: ' + err.message));

udp.bind(0, local, () => {
  const proxy = { host: opts.proxyHost, port: opts.proxyPort, type: 5 };
  if (opts.userId) {
    proxy.userId = opts.userId;
    proxy.password = opts.password;
  }
  const client = new SocksClient({
    proxy,
    command: 'associate',
    // Where our datagrams will come from: the wildcard address, and our
    // port or 0 (let the proxy learn it from the first datagram).
    destination: {
      host: opts.family === 6 ? '::' : '0.0.0.0',
      port: opts.namePort ? udp.address().port : 0,
    },
    timeout: opts.timeoutMs || 10000,
  });
  client.on('error', (err) => fail('socks: ' + err.message));
  client.on('established', (info) => {
    control = info.socket;
    control.on('error', (err) => fail('control: ' + err.message));
    control.on('close', () => {
      if (result.replies.length < count) fail('control connection closed by the proxy');
    });
    result.relay = info.remoteHost;
    let sent = null;
    const sendNext = () => {
      const i = result.replies.length;
      sent = Buffer.concat([Buffer.from('dgram ' + i + ' '), crypto.randomBytes(100 * (i + 1))]);
      const frame = SocksClient.createUDPFrame({
        remoteHost: { host: opts.targetHost, port: opts.targetPort },
        data: sent,
      });
      udp.send(frame, info.remoteHost.port, info.remoteHost.host);
    };
    udp.on('message', (msg) => {
      const f = SocksClient.parseUDPFrame(msg);
      result.replies.push({
        host: f.remoteHost.host,
        port: f.remoteHost.port,
        frameNumber: f.frameNumber,
        ok: f.data.equals(sent),
      });
      if (result.replies.length === count) done(0);
      else sendNext();
    });
    sendNext();
  });
  client.connect();
});
