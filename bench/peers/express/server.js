// The same protections as an Express proxy, as Node teams build it: jose verifies the RS256
// JWT (issuer, audience, expiry) against the local JWKS, an RBAC middleware checks the role,
// express-rate-limit limits per subject (in memory, high enough never to refuse during the run),
// helmet sets the security headers, cors answers the allowed origin, and http-proxy-middleware
// forwards to the upstream over keep-alive connections.
//
// Run: BENCH_JWKS=jwks.json BENCH_UPSTREAM=http://127.0.0.1:18080 BENCH_LISTEN=127.0.0.1:18083 node server.js
'use strict';

const fs = require('fs');
const http = require('http');
const express = require('express');
const helmet = require('helmet');
const cors = require('cors');
const { rateLimit } = require('express-rate-limit');
const { createProxyMiddleware } = require('http-proxy-middleware');
const jose = require('jose');

const jwks = jose.createLocalJWKSet(JSON.parse(fs.readFileSync(process.env.BENCH_JWKS, 'utf8')));
const [host, port] = process.env.BENCH_LISTEN.split(':');

async function authenticate(req, res, next) {
  const header = req.headers.authorization || '';
  if (!header.startsWith('Bearer ')) return res.status(401).json({ error: 'missing token' });
  try {
    const { payload } = await jose.jwtVerify(header.slice(7), jwks, {
      issuer: 'https://idp.bench.local',
      audience: 'agents-api',
      algorithms: ['RS256'],
      requiredClaims: ['exp', 'sub'],
    });
    req.user = payload;
    return next();
  } catch {
    return res.status(401).json({ error: 'invalid token' });
  }
}

function requireRole(role) {
  return (req, res, next) =>
    (req.user.roles || []).includes(role) ? next() : res.status(403).json({ error: 'forbidden' });
}

const limiter = rateLimit({
  windowMs: 60_000,
  limit: 1_000_000_000,
  keyGenerator: (req) => req.user.sub,
  standardHeaders: 'draft-7',
  legacyHeaders: false,
  validate: false,
});

const proxy = createProxyMiddleware({
  target: process.env.BENCH_UPSTREAM,
  agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
});

const app = express();
app.disable('x-powered-by');
app.use(helmet());
app.use(cors({ origin: ['https://app.example.com'] }));
app.get('/api/v1/agents/:id', authenticate, requireRole('viewer'), limiter, proxy);
app.listen(Number(port), host);
