'use strict';
// cordon's Node register hook, loaded with NODE_OPTIONS="--require <this file>" (part of `cordon env`).
//
// Routes Node's own fetch (undici) and the http/https modules through the proxy named by HTTPS_PROXY /
// HTTP_PROXY, with CONNECT tunnels, for Node versions without NODE_USE_ENV_PROXY (before 22.21) and for
// libraries that bypass it with agents of their own:
//   * fetch: the global undici dispatcher becomes an Agent whose connector opens the tunnel;
//   * http(s): http.Agent.prototype.createConnection and https.Agent.prototype.createConnection open the
//     tunnel, so every agent (the global ones, `new https.Agent(...)`, keep-alive agents of libraries) uses it.
// Hosts in NO_PROXY are reached directly. TLS inside the tunnel is verified as usual (cordon's CA comes from
// NODE_EXTRA_CA_CERTS). The hook never throws at load: on any surprise it leaves Node as it was.
(function cordonRegister() {
  const marker = Symbol.for('cordon.register');
  if (globalThis[marker]) return;
  globalThis[marker] = true;

  const net = require('net');
  const tls = require('tls');
  const http = require('http');
  const https = require('https');
  const env = process.env;
  const MAX_HEAD = 65536;

  function proxyFor(secure) {
    const raw = secure
      ? env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy
      : env.HTTP_PROXY || env.http_proxy;
    if (!raw) return null;
    let url;
    try {
      url = new URL(raw.includes('://') ? raw : 'http://' + raw);
    } catch (_) {
      return null;
    }
    if (url.protocol !== 'http:') return null;
    let auth = null;
    if (url.username || url.password) {
      const user = decodeURIComponent(url.username);
      const pass = decodeURIComponent(url.password);
      auth = 'Basic ' + Buffer.from(user + ':' + pass).toString('base64');
    }
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) || 80, auth };
  }

  const noProxy = (env.NO_PROXY || env.no_proxy || '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);

  function bypass(host) {
    const name = String(host || '').toLowerCase().replace(/^\[|\]$/g, '');
    for (const entry of noProxy) {
      if (entry === '*') return true;
      const bare = entry.replace(/^\*?\./, '').replace(/:\d+$/, '');
      if (name === bare || name.endsWith('.' + bare)) return true;
    }
    return false;
  }

  // Open a CONNECT tunnel to host:port through the proxy; callback(err, socket) with the socket paused.
  function tunnel(proxy, host, port, callback) {
    const socket = net.connect(proxy.port, proxy.host);
    let settled = false;
    let head = Buffer.alloc(0);
    const fail = (err) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      callback(err);
    };
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD) fail(new Error('cordon hook: the proxy sent an over-long answer'));
        return;
      }
      socket.removeListener('data', onData);
      socket.pause();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'));
      if (!status || status[1] !== '200') {
        const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        fail(new Error(`cordon hook: the proxy refused CONNECT ${host}:${port}: ${line}`));
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      settled = true;
      socket.removeListener('error', fail);
      callback(null, socket);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
      let request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
      if (proxy.auth) request += `Proxy-Authorization: ${proxy.auth}\r\n`;
      socket.write(request + '\r\n');
    });
    socket.on('data', onData);
  }

  function servernameOf(host, given) {
    if (given) return given;
    return net.isIP(host) ? undefined : host;
  }

  // ---- http / https agents ----------------------------------------------------------------------------

  function patchAgent(AgentClass, secure) {
    const original = AgentClass.prototype.createConnection;
    if (typeof original !== 'function') return;
    AgentClass.prototype.createConnection = function cordonCreateConnection(options, oncreate) {
      const host = options.host || options.hostname || 'localhost';
      const port = Number(options.port) || (secure ? 443 : 80);
      const proxy = proxyFor(secure);
      if (!proxy || options.socketPath || typeof oncreate !== 'function' || bypass(host)) {
        return original.call(this, options, oncreate);
      }
      tunnel(proxy, host, port, (err, raw) => {
        if (err) return oncreate(err);
        if (!secure) {
          raw.resume();
          return oncreate(null, raw);
        }
        const tlsOptions = Object.assign({}, options);
        for (const key of ['host', 'hostname', 'port', 'path', 'socketPath', 'agent', 'createConnection']) {
          delete tlsOptions[key];
        }
        tlsOptions.socket = raw;
        tlsOptions.servername = servernameOf(host, options.servername);
        return oncreate(null, tls.connect(tlsOptions));
      });
      return undefined;
    };
  }

  // ---- fetch (undici) ---------------------------------------------------------------------------------

  function connector(opts, callback) {
    const secure = opts.protocol === 'https:';
    const host = opts.hostname;
    const port = Number(opts.port) || (secure ? 443 : 80);
    const proxy = proxyFor(secure);
    const servername = servernameOf(host, opts.servername);
    const finish = (socket, event) => {
      const onError = (err) => callback(err);
      socket.once('error', onError);
      socket.once(event, () => {
        socket.removeListener('error', onError);
        callback(null, socket);
      });
    };
    if (!proxy || bypass(host)) {
      if (secure) finish(tls.connect({ host, port, servername, ALPNProtocols: ['http/1.1'] }), 'secureConnect');
      else finish(net.connect(port, host), 'connect');
      return;
    }
    tunnel(proxy, host, port, (err, raw) => {
      if (err) return callback(err);
      if (!secure) {
        raw.resume();
        return callback(null, raw);
      }
      finish(tls.connect({ socket: raw, servername, ALPNProtocols: ['http/1.1'] }), 'secureConnect');
    });
  }

  function patchFetch() {
    if (typeof globalThis.fetch !== 'function') return; // Node < 18: no global fetch
    const key = Symbol.for('undici.globalDispatcher.1');
    // Node loads its bundled undici on first use of fetch; that sets the global dispatcher to an Agent,
    // whose class accepts a custom connector
    let current = globalThis[key];
    if (!current) {
      try {
        new globalThis.Request('http://127.0.0.1/'); // loads undici without any I/O
      } catch (_) {
        return;
      }
      current = globalThis[key];
    }
    const Agent = current && current.constructor;
    // a dispatcher that is not a plain Agent (Node's own EnvHttpProxyAgent under NODE_USE_ENV_PROXY=1, or one
    // the program set) already decides where requests go: leave it
    if (typeof Agent !== 'function' || Agent.name !== 'Agent') return;
    globalThis[key] = new Agent({ connect: connector });
  }

  try {
    patchAgent(http.Agent, false);
    patchAgent(https.Agent, true);
    patchFetch();
  } catch (err) {
    if (env.CORDON_NODE_HOOK_DEBUG) process.stderr.write(`cordon hook: not installed: ${err}\n`);
  }
})();
