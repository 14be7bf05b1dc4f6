// Registers one device with Microsoft's Node DPS client over MQTT, used as
// shipped (azure-iot-provisioning-device-mqtt, pinned by package-lock.json),
// and prints the outcome as one JSON line on stdout:
//   {"ok":true,"result":{...registrationState...}}
//   {"ok":false,"error":{"name":...,"message":...,"code":...,"status":...}}
// It exits 0 when it printed either (the caller judges), 2 on bad usage.
//
// Parameters, from the environment (argv: none, so no key shows in `ps`):
//   DPS_HOST        provisioning host, with the port: 127.0.0.1:8883
//   DPS_ID_SCOPE    the ID scope
//   DPS_REGISTRATION_ID
//   one attestation:
//   DPS_SYMMETRIC_KEY    the device's own key (an individual enrollment, or
//                        one derived beforehand)
//   DPS_GROUP_KEY        an enrollment group's key: the device key is derived
//                        here, as Microsoft's group sample does
//                        (computeDerivedSymmetricKey: HMAC-SHA256)
//   DPS_CERT_FILE, DPS_KEY_FILE   X.509: a PEM certificate (chain) and key
//   DPS_TIMEOUT_MS  give up after this long (default 30000)
// The server's CA: NODE_EXTRA_CA_CERTS, which Node reads at start (the SDK
// takes no CA through its provisioning transport).
//
// Plain CommonJS for Node 18 (Debian 12's nodejs) and later.
'use strict';

var crypto = require('crypto');
var fs = require('fs');
var ProvisioningDeviceClient = require('azure-iot-provisioning-device').ProvisioningDeviceClient;
var Transport = require('azure-iot-provisioning-device-mqtt').Mqtt;
var SymmetricKeySecurityClient = require('azure-iot-security-symmetric-key').SymmetricKeySecurityClient;
var X509Security = require('azure-iot-security-x509').X509Security;

function usage(msg) {
  process.stderr.write('register.js: ' + msg + '\n');
  process.exit(2);
}

function env(name, required) {
  var v = process.env[name];
  if (required && !v) usage('set ' + name);
  return v || '';
}

// Microsoft's sample: the device key of a group enrollment is
// base64(HMAC-SHA256(base64-decode(group key), registration id)).
function computeDerivedSymmetricKey(masterKey, regId) {
  return crypto.createHmac('SHA256', Buffer.from(masterKey, 'base64'))
    .update(regId, 'utf8')
    .digest('base64');
}

var host = env('DPS_HOST', true);
var idScope = env('DPS_ID_SCOPE', true);
var registrationId = env('DPS_REGISTRATION_ID', true);
var timeoutMs = Number(env('DPS_TIMEOUT_MS', false) || 30000);

var security;
if (env('DPS_SYMMETRIC_KEY', false)) {
  security = new SymmetricKeySecurityClient(registrationId, env('DPS_SYMMETRIC_KEY', true));
} else if (env('DPS_GROUP_KEY', false)) {
  security = new SymmetricKeySecurityClient(registrationId,
    computeDerivedSymmetricKey(env('DPS_GROUP_KEY', true), registrationId));
} else if (env('DPS_CERT_FILE', false)) {
  security = new X509Security(registrationId, {
    cert: fs.readFileSync(env('DPS_CERT_FILE', true)).toString(),
    key: fs.readFileSync(env('DPS_KEY_FILE', true)).toString()
  });
} else {
  usage('set DPS_SYMMETRIC_KEY, DPS_GROUP_KEY or DPS_CERT_FILE (+ DPS_KEY_FILE)');
}

var done = false;
function report(doc) {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(doc) + '\n');
  // The SDK may hold a socket open a little longer; the answer is out.
  setTimeout(function () { process.exit(0); }, 200).unref();
}

var timer = setTimeout(function () {
  report({ ok: false, error: { name: 'Timeout', message: 'no answer within ' + timeoutMs + ' ms' } });
}, timeoutMs);
timer.unref();

var client = ProvisioningDeviceClient.create(host, idScope, new Transport(), security);
client.register(function (err, result) {
  clearTimeout(timer);
  if (err) {
    var e = {
      name: err.name || err.constructor.name,
      message: String(err.message || err)
    };
    if (err.code !== undefined) e.code = err.code;
    if (err.result !== undefined) e.result = err.result;
    if (err.transportObject && err.transportObject.topic) e.topic = err.transportObject.topic;
    if (err.transportError) {
      e.transportError = { name: err.transportError.name, message: String(err.transportError.message) };
      if (err.transportError.code !== undefined) e.transportError.code = err.transportError.code;
    }
    report({ ok: false, error: e });
  } else {
    report({ ok: true, result: result });
  }
});
