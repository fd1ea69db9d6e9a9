// Real Portcullis processes for the tests, provisioned with the CLI, and a person's browser
// (fetch with a cookie jar) that signs in and decides on the server's pages.
//
// Every server gets its own temporary directory, SQLite database and key-encryption key, and
// listens on a free loopback port with the issuer http://127.0.0.1:<port>.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as client from 'openid-client';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const PASSWORD = 'correct horse battery staple';
// Never fetched: the tests stop at the redirect to it and hand its URL to openid-client.
export const CALLBACK = 'http://127.0.0.1:9/callback';
export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// Generous: a debug binary on a busy 2-core machine.
const START_TIMEOUT_MS = 90_000;
const CLI_TIMEOUT_MS = 60_000;

export function portcullisBin() {
  let path = process.env.PORTCULLIS_BIN || join(REPO, 'target', 'debug', 'portcullis');
  if (!isAbsolute(path)) path = join(REPO, path);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`Portcullis binary not found at ${path} (build it or set PORTCULLIS_BIN)`);
  }
  return path;
}

// Linux: the server gets SIGTERM if this test process dies without running its cleanup
// (util-linux setpriv; without it, the exit hook below is the only cleanup).
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find(
  (p) => existsSync(p) && spawnSync(p, ['--pdeathsig', 'TERM', 'true']).status === 0,
);

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.once(signal, () => process.exit(code));
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One `portcullis serve` process; `cli()` runs commands against its database and KEK. */
export class Portcullis {
  constructor(name, settings = {}) {
    this.name = name;
    this.dir = mkdtempSync(join(tmpdir(), `portcullis-node-${name}-`));
    this.settings = settings;
    this.kek = randomBytes(32).toString('base64');
    this.child = undefined;
    this.port = 0;
    this.logPath = join(this.dir, 'server.log');
  }

  get issuer() {
    return `http://127.0.0.1:${this.port}`;
  }

  url(path) {
    return `${this.issuer}${path}`;
  }

  env() {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('PORTCULLIS_')),
    );
    return {
      ...env,
      PORTCULLIS_DATABASE_URL: join(this.dir, 'portcullis.db'),
      PORTCULLIS_BIND: `127.0.0.1:${this.port}`,
      PORTCULLIS_ISSUER: this.issuer,
      PORTCULLIS_KEY_ENCRYPTION_KEY: this.kek,
      // Keeps the key-encryption key out of the working directory, whatever happens.
      PORTCULLIS_KEY_ENCRYPTION_KEY_FILE: join(this.dir, 'unused-kek-file'),
      RUST_LOG: 'info,portcullis::access=off',
      ...this.settings,
    };
  }

  /** Runs `portcullis ARGS…`; its JSON output. Fails the test on a non-zero exit. */
  cli(args, stdin) {
    const result = spawnSync(portcullisBin(), args, {
      env: { ...this.env(), RUST_LOG: 'warn' },
      cwd: this.dir,
      input: stdin ?? '',
      encoding: 'utf8',
      timeout: CLI_TIMEOUT_MS,
    });
    if (result.status !== 0) {
      throw new Error(
        `portcullis ${args.join(' ')} exited ${result.status ?? result.signal}:\n${result.stderr}`,
      );
    }
    return JSON.parse(result.stdout);
  }

  user(username) {
    return this.cli(
      ['user', 'create', '--username', username, '--email', `${username}@example.test`,
        '--name', `${username} Example`, '--role', 'user', '--password-stdin'],
      PASSWORD,
    );
  }

  /** `client create`; `extra` holds the other flags. The JSON (with a generated secret). */
  client(id, extra) {
    return this.cli(['client', 'create', '--id', id, '--name', `${id} app`, ...extra]);
  }

  async start() {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      this.port = await freePort();
      const [command, ...args] = SETPRIV
        ? [SETPRIV, '--pdeathsig', 'TERM', '--', portcullisBin(), 'serve']
        : [portcullisBin(), 'serve'];
      const log = openSync(this.logPath, 'a');
      this.child = spawn(command, args, {
        env: this.env(),
        cwd: this.dir,
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      running.add(this.child);
      const exited = new Promise((r) => this.child.once('exit', () => r(true)));
      this.exited = exited;
      if (await this.#healthy(exited)) return this;
      await this.stop({ keepDir: true });
      if (!this.log().includes('in use')) break;
    }
    throw new Error(`portcullis (${this.name}) did not become healthy:\n${this.log()}`);
  }

  async #healthy(exited) {
    let gone = false;
    exited.then(() => {
      gone = true;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && !gone) {
      try {
        const response = await fetch(this.url('/healthz'), { signal: AbortSignal.timeout(2000) });
        if (response.status === 200) return true;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    return false;
  }

  async stop({ keepDir = false } = {}) {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      // SIGINT: the graceful stop without SIGTERM's shutdown_delay (docs/operations.md).
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(timer);
    }
    if (child) running.delete(child);
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  log(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/**
 * openid-client's discovery of this server. Loopback http in the tests: openid-client v6
 * refuses http:// unless told otherwise (allowInsecureRequests).
 */
export function discover(server, clientId, metadata, clientAuth, execute = []) {
  return client.discovery(new URL(server.issuer), clientId, metadata, clientAuth, {
    execute: [client.allowInsecureRequests, ...execute],
  });
}

/** The claims of a JWT, not verified (for the access token's cnf.jkt, client_id, …). */
export function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/** Wraps a fetch: every request and its answer, in order (for asserting what went over the wire). */
export function recordingFetch(log, before) {
  return async (url, options) => {
    const entry = { url: String(url), method: options?.method ?? 'GET',
      headers: new Headers(options?.headers), body: options?.body?.toString() };
    log.push(entry);
    if (before) await before(entry, url, options);
    entry.at = Date.now();
    const response = await fetch(url, options);
    entry.status = response.status;
    entry.responseHeaders = response.headers;
    entry.json = await response.clone().json().catch(() => undefined);
    return response;
  };
}

// ---------------------------------------------------------------------------------------------
// The person: fetch with a small cookie jar, no automatic redirects.

function unescapeHtml(text) {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The value of the input named `name` (hidden or not), or undefined. */
export function field(html, name) {
  const match = html.match(new RegExp(`name="${name}"[^>]*?\\svalue="([^"]*)"`));
  return match ? unescapeHtml(match[1]) : undefined;
}

/** The action of the page's (first) form. */
export function formAction(html) {
  const match = html.match(/<form[^>]*\saction="([^"]*)"/);
  return match ? unescapeHtml(match[1]) : undefined;
}

export class Browser {
  constructor(base) {
    this.base = base;
    this.cookies = new Map();
  }

  absolute(location) {
    return new URL(location, this.base).href;
  }

  async request(url, { method = 'GET', form } = {}) {
    const headers = new Headers();
    if (this.cookies.size) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    let body;
    if (form) {
      body = new URLSearchParams(form);
      headers.set('content-type', 'application/x-www-form-urlencoded');
    }
    const response = await fetch(this.absolute(url), { method, headers, body, redirect: 'manual' });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair, ...attributes] = cookie.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(eq + 1).trim());
    }
    const text = await response.text();
    return { status: response.status, location: response.headers.get('location'), text, response };
  }

  get(url) {
    return this.request(url);
  }

  postForm(url, form) {
    return this.request(url, { method: 'POST', form });
  }

  /**
   * Follows an authorization URL through sign-in and consent (allow) until the server
   * redirects away from itself: that URL, the client's redirect URI with its answer.
   */
  async authorize(authorizationUrl, username, password = PASSWORD) {
    let page = await this.get(authorizationUrl);
    for (let step = 0; step < 20; step += 1) {
      if (page.status === 302 || page.status === 303) {
        const next = new URL(page.location, this.base);
        if (next.origin !== new URL(this.base).origin) return next;
        page = await this.get(next.href);
        continue;
      }
      if (page.status !== 200) {
        throw new Error(`authorize: unexpected ${page.status}: ${page.text.slice(0, 500)}`);
      }
      const form = {
        csrf_token: field(page.text, 'csrf_token'),
        request: field(page.text, 'request') ?? '',
      };
      if (page.text.includes('name="password"')) {
        page = await this.postForm('/login', { ...form, username, password });
      } else {
        page = await this.postForm(formAction(page.text) ?? '/consent', {
          ...form, decision: 'allow',
        });
      }
      if (page.status !== 303) {
        throw new Error(`form POST answered ${page.status}: ${page.text.slice(0, 500)}`);
      }
    }
    throw new Error('authorize: too many steps');
  }
}

/**
 * The person at the device pages (RFC 8628 §3.3): opens verification_uri_complete, confirms
 * the code, signs in, then allows or denies. The text of the last page.
 */
export async function personDecides(verificationUriComplete, username, decision) {
  const browser = new Browser(new URL(verificationUriComplete).origin);
  const start = await browser.get(verificationUriComplete);
  if (start.status !== 200) throw new Error(`/device answered ${start.status}`);
  const entered = await browser.postForm('/device', {
    csrf_token: field(start.text, 'csrf_token'),
    user_code: field(start.text, 'user_code'),
  });
  expectRedirect(entered, '/device/consent');
  expectRedirect(await browser.get('/device/consent'), '/login');
  const login = await browser.get('/login');
  const signedIn = await browser.postForm('/login', {
    csrf_token: field(login.text, 'csrf_token'),
    request: field(login.text, 'request') ?? '',
    username,
    password: PASSWORD,
  });
  expectRedirect(signedIn, '/device/consent');
  const consent = await browser.get('/device/consent');
  if (formAction(consent.text) !== '/device/decision') {
    throw new Error(`no decision form on /device/consent:\n${consent.text.slice(0, 500)}`);
  }
  const decided = await browser.postForm('/device/decision', {
    csrf_token: field(consent.text, 'csrf_token'),
    decision,
  });
  if (decided.status !== 200) throw new Error(`/device/decision answered ${decided.status}`);
  return decided.text;
}

function expectRedirect(page, location) {
  if (page.status !== 303 || page.location !== location) {
    throw new Error(`expected 303 to ${location}, got ${page.status} ${page.location}:\n`
      + page.text.slice(0, 500));
  }
}
