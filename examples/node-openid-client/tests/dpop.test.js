// DPoP (RFC 9449) with openid-client's DPoP handle (getDPoPHandle) and a generated ES256 key:
// client credentials, the code flow of a public client with refresh, the device grant and
// /userinfo; then a server that demands nonces, which openid-client retries with transparently.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { calculateJwkThumbprint, decodeProtectedHeader, exportJWK } from 'jose';
import * as client from 'openid-client';

import {
  Browser, CALLBACK, DEVICE_GRANT, Portcullis, claimsOf, discover, personDecides,
  recordingFetch,
} from './harness.js';

const CODE_CLIENT = ['--public', '--grant-type', 'authorization_code',
  '--grant-type', 'refresh_token', '--scope', 'openid profile offline_access',
  '--redirect-uri', CALLBACK];

/** A fresh ES256 key pair (WebCrypto, as openid-client wants) and its RFC 7638 thumbprint. */
async function dpopKey() {
  const keyPair = await client.randomDPoPKeyPair('ES256');
  const jwk = await exportJWK(keyPair.publicKey);
  assert.equal(jwk.crv, 'P-256');
  return { keyPair, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

/** The DPoP proofs a recorded request carried: [header, claims] each. */
function proofsOf(entry) {
  const value = entry.headers.get('dpop');
  if (!value) return [];
  return [[decodeProtectedHeader(value), claimsOf(value)]];
}

function provision(server) {
  const svc = server.client('svc', ['--grant-type', 'client_credentials',
    '--scope', 'models:read']);
  server.client('spa', CODE_CLIENT);
  server.client('tv', ['--public', '--grant-type', DEVICE_GRANT, '--scope', 'openid']);
  server.user('ada');
  return svc.client_secret;
}

/**
 * The code flow of the public client `spa`, the code redeemed by openid-client with a proof of
 * `dpop` (none when undefined). `push`: a pushed request, with a proof of `push.dpop` if given.
 */
async function codeFlow(server, config, dpop, { push, extra = {} } = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const expectedState = client.randomState();
  const parameters = {
    redirect_uri: CALLBACK,
    scope: 'openid profile offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: expectedState,
    ...extra,
  };
  const url = push
    ? await client.buildAuthorizationUrlWithPAR(config, parameters,
      push.dpop ? { DPoP: push.dpop } : undefined)
    : client.buildAuthorizationUrl(config, parameters);
  const callback = await new Browser(server.issuer).authorize(url.href, 'ada');
  return client.authorizationCodeGrant(config, callback, { pkceCodeVerifier, expectedState },
    undefined, dpop ? { DPoP: dpop } : undefined);
}

/** A token request the server refused (400, any OAuth error code). */
function refusedGrant(error) {
  assert.ok(error instanceof client.ResponseBodyError, `expected a refusal, got ${error}`);
  assert.equal(error.status, 400);
  return true;
}

describe('DPoP', () => {
  let server;
  let svcSecret;

  before(async () => {
    server = new Portcullis('dpop', { PORTCULLIS_DEVICE_POLL_INTERVAL: '1' });
    svcSecret = provision(server);
    await server.start();
  });

  after(() => server?.stop());

  test('discovery advertises the proof algorithms', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    assert.ok(config.serverMetadata().dpop_signing_alg_values_supported.includes('ES256'));
  });

  test('client credentials: a token bound to the key (token_type DPoP, cnf.jkt)', async () => {
    const config = await discover(server, 'svc', undefined, client.ClientSecretBasic(svcSecret));
    const wire = [];
    config[client.customFetch] = recordingFetch(wire);
    const { keyPair, jkt } = await dpopKey();
    const dpop = client.getDPoPHandle(config, keyPair);
    const tokens = await client.clientCredentialsGrant(config, { scope: 'models:read' },
      { DPoP: dpop });
    assert.equal(tokens.token_type, 'dpop'); // openid-client lower-cases it
    const exchange = wire.find((r) => r.url === server.url('/token'));
    assert.equal(exchange.json.token_type, 'DPoP', 'on the wire');
    assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);
    // The proof openid-client sent: typ, the public key, htm/htu of the token endpoint.
    const [[header, claims]] = proofsOf(exchange);
    assert.equal(header.typ, 'dpop+jwt');
    assert.equal(header.alg, 'ES256');
    assert.equal(await calculateJwkThumbprint(header.jwk), jkt);
    assert.equal(claims.htm, 'POST');
    assert.equal(claims.htu, server.url('/token'));

    // Without the handle: a bearer token, unbound.
    const plain = await client.clientCredentialsGrant(config, { scope: 'models:read' });
    assert.equal(plain.token_type, 'bearer');
    assert.equal(claimsOf(plain.access_token).cnf, undefined);
  });

  test('the code flow of a public client, refresh and /userinfo, all bound to one key',
    async () => {
      const config = await discover(server, 'spa', undefined, client.None());
      const { keyPair, jkt } = await dpopKey();
      const dpop = client.getDPoPHandle(config, keyPair);
      const tokens = await codeFlow(server, config, dpop);
      assert.equal(tokens.token_type, 'dpop');
      assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);
      assert.ok(tokens.refresh_token);
      const sub = tokens.claims().sub;

      // /userinfo with the DPoP scheme and a proof carrying ath (openid-client's doing).
      const wire = [];
      config[client.customFetch] = recordingFetch(wire);
      const info = await client.fetchUserInfo(config, tokens.access_token, sub, { DPoP: dpop });
      assert.equal(info.preferred_username, 'ada');
      const call = wire.find((r) => r.url === server.url('/userinfo'));
      assert.equal(call.headers.get('authorization'), `DPoP ${tokens.access_token}`);
      const [[, claims]] = proofsOf(call);
      assert.equal(claims.htm, 'GET');
      assert.ok(claims.ath, 'ath');

      // The refresh token of a public client is bound too: refreshed with the same key.
      const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined,
        { DPoP: dpop });
      assert.equal(refreshed.token_type, 'dpop');
      assert.equal(claimsOf(refreshed.access_token).cnf.jkt, jkt);
      const again = await client.fetchUserInfo(config, refreshed.access_token, sub,
        { DPoP: dpop });
      assert.equal(again.sub, sub);

      // Another key cannot use the (rotated) refresh token, nor the access token.
      const thief = client.getDPoPHandle(config, (await dpopKey()).keyPair);
      await assert.rejects(
        client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP: thief }),
        (error) => error instanceof client.ResponseBodyError
          && error.error === 'invalid_dpop_proof',
      );
      await assert.rejects(
        client.fetchUserInfo(config, refreshed.access_token, sub, { DPoP: thief }),
        (error) => error instanceof client.WWWAuthenticateChallengeError
          && error.cause[0].scheme === 'dpop' && error.cause[0].parameters.error === 'invalid_token',
      );
      // Nor is the bound access token good as a bearer token.
      await assert.rejects(
        client.fetchUserInfo(config, refreshed.access_token, sub),
        (error) => error instanceof client.WWWAuthenticateChallengeError
          && error.cause[0].scheme === 'dpop' && error.status === 401,
      );
    });

  test('the device grant, polled with proofs: a bound token', async () => {
    const config = await discover(server, 'tv', undefined, client.None());
    const { keyPair, jkt } = await dpopKey();
    const dpop = client.getDPoPHandle(config, keyPair);
    const started = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
    const polling = client.pollDeviceAuthorizationGrant(config, started, undefined,
      { DPoP: dpop, signal: AbortSignal.timeout(60_000) });
    await personDecides(started.verification_uri_complete, 'ada', 'allow');
    const tokens = await polling;
    assert.equal(tokens.token_type, 'dpop');
    assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);
  });

  test('PAR with a proof at the push (openid-client sends one), redeemed with the same key',
    async () => {
      const config = await discover(server, 'spa', undefined, client.None());
      const { keyPair, jkt } = await dpopKey();
      const dpop = client.getDPoPHandle(config, keyPair);
      const tokens = await codeFlow(server, config, dpop, { push: { dpop } });
      assert.equal(tokens.token_type, 'dpop');
      assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);
    });

  // RFC 9449 §10.1: "Both mechanisms MUST be supported by an authorization server that
  // supports PAR and DPoP": a DPoP header at the PAR endpoint is checked (§4.3) and binds the
  // code as dpop_jkt would; dpop_jkt in the pushed body binds the code (§10: a token request
  // with another key MUST be rejected).
  test('a code pushed with a proof cannot be redeemed with another key',
    async () => {
      const config = await discover(server, 'spa', undefined, client.None());
      const pusher = client.getDPoPHandle(config, (await dpopKey()).keyPair);
      const other = client.getDPoPHandle(config, (await dpopKey()).keyPair);
      await assert.rejects(codeFlow(server, config, other, { push: { dpop: pusher } }),
        refusedGrant);
    });

  test('a code pushed with a proof cannot be redeemed without one',
    async () => {
      const config = await discover(server, 'spa', undefined, client.None());
      const pusher = client.getDPoPHandle(config, (await dpopKey()).keyPair);
      await assert.rejects(codeFlow(server, config, undefined, { push: { dpop: pusher } }),
        refusedGrant);
    });

  test('dpop_jkt in a pushed request binds the code', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    const bound = await dpopKey();
    const other = client.getDPoPHandle(config, (await dpopKey()).keyPair);
    await assert.rejects(
      codeFlow(server, config, other, { push: {}, extra: { dpop_jkt: bound.jkt } }),
      refusedGrant);
  });

  test('a malformed proof at /par is refused (invalid_dpop_proof)',
    async () => {
      const response = await fetch(server.url('/par'), {
        method: 'POST',
        headers: { DPoP: 'not.a.jwt' },
        body: new URLSearchParams({
          client_id: 'spa', response_type: 'code', redirect_uri: CALLBACK, scope: 'openid',
          code_challenge: await client.calculatePKCECodeChallenge(
            client.randomPKCECodeVerifier()),
          code_challenge_method: 'S256',
        }),
      });
      const body = await response.json();
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal(body.error, 'invalid_dpop_proof');
    });
});

describe('DPoP with server nonces (use_dpop_nonce)', () => {
  let server;
  let svcSecret;

  before(async () => {
    server = new Portcullis('dpop-nonce', { PORTCULLIS_USE_DPOP_NONCE: 'true' });
    svcSecret = provision(server);
    await server.start();
  });

  after(() => server?.stop());

  test('client credentials: openid-client retries once with the nonce, then reuses it',
    async () => {
      const config = await discover(server, 'svc', undefined,
        client.ClientSecretBasic(svcSecret));
      const wire = [];
      config[client.customFetch] = recordingFetch(wire);
      const { keyPair, jkt } = await dpopKey();
      const dpop = client.getDPoPHandle(config, keyPair);
      const tokens = await client.clientCredentialsGrant(config, { scope: 'models:read' },
        { DPoP: dpop });
      assert.equal(tokens.token_type, 'dpop');
      assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);

      const [first, second, ...rest] = wire.filter((r) => r.url === server.url('/token'));
      assert.equal(rest.length, 0);
      assert.equal(first.status, 400);
      assert.equal(first.json.error, 'use_dpop_nonce');
      const nonce = first.responseHeaders.get('dpop-nonce');
      assert.ok(nonce, 'DPoP-Nonce header');
      assert.equal(proofsOf(first)[0][1].nonce, undefined);
      assert.equal(second.status, 200);
      assert.equal(proofsOf(second)[0][1].nonce, nonce);

      // The next request carries the cached nonce at once: no second round trip.
      await client.clientCredentialsGrant(config, { scope: 'models:read' }, { DPoP: dpop });
      const later = wire.filter((r) => r.url === server.url('/token')).slice(2);
      assert.deepEqual(later.map((r) => r.status), [200]);
      assert.ok(proofsOf(later[0])[0][1].nonce);
    });

  test('code flow, refresh and /userinfo: every nonce challenge is met', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    const wire = [];
    config[client.customFetch] = recordingFetch(wire);
    const { keyPair, jkt } = await dpopKey();
    const dpop = client.getDPoPHandle(config, keyPair);
    const tokens = await codeFlow(server, config, dpop);
    assert.equal(tokens.token_type, 'dpop');
    assert.equal(claimsOf(tokens.access_token).cnf.jkt, jkt);
    const info = await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub,
      { DPoP: dpop });
    assert.equal(info.preferred_username, 'ada');
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined,
      { DPoP: dpop });
    assert.equal(claimsOf(refreshed.access_token).cnf.jkt, jkt);

    const tokenCalls = wire.filter((r) => r.url === server.url('/token'));
    assert.equal(tokenCalls[0].json?.error, 'use_dpop_nonce', 'the first proof had no nonce');
    assert.equal(tokenCalls.at(-1).status, 200);
    assert.ok(wire.every((r) => r.status < 500), JSON.stringify(wire.map((r) => r.status)));

    // A new handle (no nonce cached) at /userinfo: 401 with a DPoP use_dpop_nonce challenge
    // and a DPoP-Nonce header (RFC 9449 §9), and openid-client retries with it.
    wire.length = 0;
    const fresh = client.getDPoPHandle(config, keyPair);
    const again = await client.fetchUserInfo(config, refreshed.access_token,
      tokens.claims().sub, { DPoP: fresh });
    assert.equal(again.preferred_username, 'ada');
    const [challenged, retried] = wire.filter((r) => r.url === server.url('/userinfo'));
    assert.equal(challenged.status, 401);
    assert.match(challenged.responseHeaders.get('www-authenticate'),
      /^DPoP .*error="use_dpop_nonce"/);
    const nonce = challenged.responseHeaders.get('dpop-nonce');
    assert.ok(nonce);
    assert.equal(retried.status, 200);
    assert.equal(proofsOf(retried)[0][1].nonce, nonce);
  });
});
