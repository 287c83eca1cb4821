// TLS end to end: a test CA and a server certificate are made here with the
// openssl CLI, then the suite in ../tls/wss.js runs in a node process of its
// own with NODE_EXTRA_CA_CERTS pointing at the CA (node reads it only at
// start), as an operator's clients would trust a private CA.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Makes a CA and two leaf certificates (localhost, 127.0.0.1) it signed. */
export function makeCerts() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'realtime-e2e-tls-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=realtime e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  writeFileSync(path.join(dir, 'ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' +
    'keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  for (const leaf of ['leaf1', 'leaf2']) {
    ssl('req', ...ec, '-keyout', `${leaf}.key`, '-out', `${leaf}.csr`, '-subj', `/CN=${leaf}`);
    ssl('x509', '-req', '-in', `${leaf}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-CAcreateserial', '-out', `${leaf}.pem`, '-days', '2', '-extfile', 'ext.cnf');
  }
  return dir;
}

test('pusher-js, laravel-echo and the pusher SDK over wss:// and https:// against a test CA', { timeout: 60000 }, () => {
  const dir = makeCerts();
  // Without the parent runner's context, so the child reports in TAP here.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const run = spawnSync(process.execPath, ['--test', path.join(here, '..', 'tls', 'wss.js')], {
    env: { ...env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem'), E2E_TLS_DIR: dir },
    encoding: 'utf8',
    timeout: 55000,
  });
  assert.equal(run.status, 0, `tls suite failed:\n${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /# fail 0/);
  assert.doesNotMatch(run.stdout, /# pass 0\b/);
});
