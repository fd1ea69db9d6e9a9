// The device authorization grant (RFC 8628) with openid-client as the device:
// initiateDeviceAuthorization + pollDeviceAuthorizationGrant, while the test plays the person
// at /device over HTTP.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as client from 'openid-client';

import {
  DEVICE_GRANT, Portcullis, claimsOf, discover, personDecides, recordingFetch, sleep,
} from './harness.js';

let server;

before(async () => {
  // A 1 s poll interval keeps the polling tests short.
  server = new Portcullis('device', { PORTCULLIS_DEVICE_POLL_INTERVAL: '1' });
  server.client('tv', ['--public', '--grant-type', DEVICE_GRANT, '--grant-type', 'refresh_token',
    '--scope', 'openid profile email offline_access']);
  for (const name of ['ada', 'bob', 'cy']) server.user(name);
  await server.start();
});

after(() => server?.stop());

/** The device's configuration: a public client, the ID token's signature checked as well. */
async function device(execute = []) {
  return discover(server, 'tv', undefined, client.None(),
    [client.enableNonRepudiationChecks, ...execute]);
}

// Bounds a poll that would otherwise wait for the code's expiry (600 s) when a test fails.
const bounded = () => ({ signal: AbortSignal.timeout(60_000) });

test('discovery advertises the device authorization endpoint', async () => {
  const config = await device();
  const metadata = config.serverMetadata();
  assert.equal(metadata.device_authorization_endpoint, server.url('/device_authorization'));
  assert.ok(metadata.grant_types_supported.includes(DEVICE_GRANT));
});

test('a device is signed in: ID token validated, refresh token with offline_access', async () => {
  const config = await device();
  const started = await client.initiateDeviceAuthorization(config, {
    scope: 'openid profile offline_access',
  });
  assert.match(started.user_code, /^[B-DF-HJ-NP-TV-Z]{4}-[B-DF-HJ-NP-TV-Z]{4}$/);
  assert.equal(started.verification_uri, server.url('/device'));
  assert.equal(started.verification_uri_complete,
    server.url(`/device?user_code=${started.user_code}`));
  assert.equal(started.interval, 1);
  assert.equal(started.expires_in, 600);

  // The device polls (openid-client's own waits) while its person decides.
  const polling = client.pollDeviceAuthorizationGrant(config, started, undefined, bounded());
  const page = await personDecides(started.verification_uri_complete, 'ada', 'allow');
  assert.match(page, /Your device is connected/);
  const tokens = await polling;

  assert.equal(tokens.token_type, 'bearer');
  assert.ok(tokens.refresh_token, 'offline_access: a refresh token');
  assert.deepEqual(new Set(tokens.scope.split(' ')), new Set(['openid', 'profile', 'offline_access']));
  const id = tokens.claims(); // validated by openid-client (iss, aud, exp, iat; signature)
  assert.equal(id.iss, server.issuer);
  assert.equal(id.aud, 'tv');
  assert.ok(id.auth_time <= id.iat);
  // The profile claims come from /userinfo (openid-client checks its sub against the ID token's).
  const info = await client.fetchUserInfo(config, tokens.access_token, id.sub);
  assert.equal(info.preferred_username, 'ada');
  const access = claimsOf(tokens.access_token);
  assert.equal(access.client_id, 'tv');
  assert.equal(access.sub, id.sub);

  // The refresh token works with openid-client's refresh grant.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
  assert.equal(claimsOf(refreshed.access_token).sub, id.sub);
});

test('a denied device: openid-client rejects with access_denied', async () => {
  const config = await device();
  const started = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
  const polling = client.pollDeviceAuthorizationGrant(config, started, undefined, bounded());
  // Observed before the decision, so the rejection is not unhandled meanwhile.
  const outcome = polling.then(() => 'tokens', (error) => error);
  const page = await personDecides(started.verification_uri_complete, 'bob', 'deny');
  assert.match(page, /not connected/);
  const error = await outcome;
  assert.ok(error instanceof client.ResponseBodyError, `${error}`);
  assert.equal(error.error, 'access_denied');
  assert.equal(error.status, 400);
});

test('polling honours slow_down: the interval grows by 5 s and the grant completes', async () => {
  const config = await device();
  const polls = [];
  let twinSent = false;
  // Just before openid-client's first poll, an impatient twin of the device polls with the
  // same device_code: openid-client's own poll then comes too soon and gets slow_down.
  config[client.customFetch] = recordingFetch(polls, async (entry, url, options) => {
    if (!twinSent && entry.url === server.url('/token')) {
      twinSent = true;
      // The server measures the gap in whole seconds (now - last < interval): with a 1 s
      // interval, two polls a few ms apart on either side of a second boundary both count as
      // on time. So the pair starts just after a second begins.
      while (Date.now() % 1000 > 50) await sleep(5);
      const twin = await fetch(url, options);
      assert.equal((await twin.json()).error, 'authorization_pending');
    }
  });
  const started = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
  const polling = client.pollDeviceAuthorizationGrant(config, started, undefined, bounded());
  const outcome = polling.then((tokens) => tokens, (error) => error);

  // The person approves once the device has been told to slow down.
  const deadline = Date.now() + 30_000;
  while (!polls.some((p) => p.json?.error === 'slow_down') && Date.now() < deadline) {
    await sleep(100);
  }
  await personDecides(started.verification_uri_complete, 'cy', 'allow');
  const tokens = await outcome;
  const tokenPolls = polls.filter((p) => p.url === server.url('/token'));
  const answers = tokenPolls.map((p) => p.json?.error ?? p.status);
  const story = JSON.stringify(tokenPolls.map((p) => [p.at % 100_000, p.json?.error ?? p.status,
    p.json?.error_description]));
  assert.ok(!(tokens instanceof Error),
    `${tokens} ${tokens.error} (${tokens.status}): ${story}\n${server.log(30)}`);
  assert.ok(tokens.access_token);

  assert.equal(answers[0], 'slow_down', story);
  assert.equal(answers.at(-1), 200, JSON.stringify(answers));
  assert.equal(answers.filter((a) => a === 'slow_down').length, 1,
    `only one slow_down: the client kept the longer interval (${JSON.stringify(answers)})`);
  // After slow_down the device waited the old interval (1 s) plus 5 s before polling again.
  const gap = tokenPolls[1].at - tokenPolls[0].at;
  assert.ok(gap >= 6000 - 50, `waited ${gap} ms after slow_down`);
});
