// AWS IoT fleet provisioning by claim, done by AWS's own v2 Node SDK
// (aws-iot-device-sdk-v2 with aws-crt, pinned by package-lock.json, used as
// shipped), against whatever serves the endpoint: enrolld in our tests.
//
//   node fleet_v2.js --host H --port N --ca CA.pem --cert CLAIM.pem --key CLAIM.key
//        --template NAME [--param K=V]... (--mode csr --csr DEV.csr | --mode keys)
//        [--api rr|pubsub] [--mqtt 5|311] [--client-id ID] [--timeout SECONDS]
//        [--out-cert FILE] [--out-key FILE] [--verbosity error|info|debug|trace]
//
// It connects over mutual TLS (the claim certificate, or a device's own one),
// then CreateCertificateFromCsr (--mode csr) or CreateKeysAndCertificate
// (--mode keys), then RegisterThing with the ownership token, and prints one
// JSON line on stdout:
//   {"ok":true,"certificateId","certificatePem","privateKey" (keys only),
//    "certificateOwnershipToken","thingName","deviceConfiguration"}
//   {"ok":false,"stage":"create|register","statusCode","errorCode","errorMessage"}
//   {"ok":false,"stage":"connect|create|register","transport":"..."}   (no answer)
// Exit status: 0 accepted, 1 rejected, 2 bad usage or a transport failure
// (refused connection, dropped connection, no answer before --timeout,
// default 30 s).
//
// The two ways the SDK offers, each as AWS's samples use it:
//   --api rr (default): iotidentity.IotIdentityClientv2, the request-response
//     client, exactly as samples/node/fleet_provisioning/{csr,basic}/index.ts
//     (MQTT5 client from iot.AwsIotMqtt5ClientConfigBuilder
//     .newDirectMqttBuilderWithMtlsFromPath, RejoinPostSuccess,
//     maxRequestResponseSubscriptions 2, no client id: the server assigns one).
//   --api pubsub: iotidentity.IotIdentityClient, subscribe accepted+rejected
//     (QoS 1) then publish (QoS 1), as samples/node/deprecated/fleet_provisioning.
//   --mqtt 5 (default) or 311: the MQTT 3.1.1 connection of
//     iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path, clean
//     session false, client id "test-<random>" (the samples' --mqtt5 switch).
// Only endpoint, port, CA and credentials differ from AWS's own usage.
//
// Plain CommonJS for Node 18 and later.
'use strict';

var fs = require('fs');

var EXIT_OK = 0, EXIT_REJECTED = 1, EXIT_FAIL = 2;

function usage(msg) {
  process.stderr.write('fleet_v2.js: ' + msg + '\n' +
    'usage: node fleet_v2.js --host H --port N --ca CA --cert CERT --key KEY --template NAME\n' +
    '         [--param K=V]... (--mode csr --csr FILE | --mode keys) [--api rr|pubsub]\n' +
    '         [--mqtt 5|311] [--client-id ID] [--timeout S] [--out-cert F] [--out-key F]\n' +
    '         [--verbosity none|error|warn|info|debug|trace]\n');
  process.exit(EXIT_FAIL);
}

// ---- arguments -----------------------------------------------------------------
var opt = { api: 'rr', mqtt: '5', timeout: '30', verbosity: 'none', params: {} };
var known = ['host', 'port', 'ca', 'cert', 'key', 'template', 'mode', 'csr', 'api', 'mqtt',
  'client-id', 'timeout', 'out-cert', 'out-key', 'verbosity'];
var nparams = 0;
(function parse(argv) {
  for (var i = 0; i < argv.length; i++) {
    var a = argv[i];
    if (a === '-h' || a === '--help') usage('help');
    if (a.slice(0, 2) !== '--') usage('unexpected argument ' + JSON.stringify(a));
    var name = a.slice(2), value;
    var eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    else { if (i + 1 >= argv.length) usage('--' + name + ' needs a value'); value = argv[++i]; }
    if (name === 'param') {
      var k = value.indexOf('=');
      if (k <= 0) usage('--param wants K=V, not ' + JSON.stringify(value));
      opt.params[value.slice(0, k)] = value.slice(k + 1);
      nparams++;
    } else if (known.indexOf(name) >= 0) {
      opt[name] = value;
    } else {
      usage('unknown option --' + name);
    }
  }
})(process.argv.slice(2));

['host', 'port', 'ca', 'cert', 'key', 'template', 'mode'].forEach(function (n) {
  if (!opt[n]) usage('--' + n + ' is required');
});
if (opt.mode !== 'csr' && opt.mode !== 'keys') usage('--mode is csr or keys');
if (opt.mode === 'csr' && !opt.csr) usage('--mode csr needs --csr FILE');
if (opt.mode === 'keys' && opt.csr) usage('--csr goes with --mode csr');
if (opt.mode === 'csr' && opt['out-key']) usage('--out-key goes with --mode keys (in csr mode the key is yours)');
if (opt.api !== 'rr' && opt.api !== 'pubsub') usage('--api is rr or pubsub');
if (opt.mqtt !== '5' && opt.mqtt !== '311') usage('--mqtt is 5 or 311');
var port = Number(opt.port);
if (!(port > 0 && port < 65536 && Math.floor(port) === port)) usage('bad --port ' + opt.port);
var timeoutS = Number(opt.timeout);
if (!(timeoutS > 0)) usage('bad --timeout ' + opt.timeout);
var csrPem = '';
if (opt.mode === 'csr') {
  try { csrPem = fs.readFileSync(opt.csr, 'utf8'); } catch (e) { usage('cannot read --csr: ' + e.message); }
}
['ca', 'cert', 'key'].forEach(function (n) {
  try { fs.accessSync(opt[n], fs.constants.R_OK); } catch (e) { usage('cannot read --' + n + ': ' + e.message); }
});

var sdk = require('aws-iot-device-sdk-v2');
var iot = sdk.iot, mqtt = sdk.mqtt, mqtt5 = sdk.mqtt5, io = sdk.io, iotidentity = sdk.iotidentity;

if (opt.verbosity !== 'none') {
  var level = io.LogLevel[opt.verbosity.toUpperCase()];
  if (level === undefined) usage('bad --verbosity ' + opt.verbosity);
  // The CRT's own log, on stderr.
  io.enable_logging(level);
}

// ---- the one answer --------------------------------------------------------------
var done = false;
var stage = 'connect';
var client5 = null, connection = null, identity = null;

function finish(doc, code) {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(doc) + '\n');
  // Close as the samples do (identity client, then stop the protocol
  // client), but never wait long for it: the answer is out.
  setTimeout(function () { process.exit(code); }, 2000).unref();
  try {
    if (identity && identity.close) identity.close();
    if (client5) {
      client5.once('stopped', function () { process.exit(code); });
      client5.stop();
    } else if (connection) {
      connection.disconnect().then(function () { process.exit(code); }, function () { process.exit(code); });
    } else {
      process.exit(code);
    }
  } catch (e) {
    process.exit(code);
  }
}

function transportFailure(what) {
  finish({ ok: false, stage: stage, transport: String(what) }, EXIT_FAIL);
}

function rejected(errorResponse) {
  var r = errorResponse || {};
  finish({ ok: false, stage: stage, statusCode: r.statusCode, errorCode: r.errorCode,
    errorMessage: r.errorMessage }, EXIT_REJECTED);
}

function errText(e) {
  if (!e) return 'unknown error';
  var s = e.message || String(e);
  if (e.internalError) s += ' (' + errText(e.internalError) + ')';
  if (e.error_name) s += ' [' + e.error_name + ']';
  return s;
}

function writeFile(path, text, mode) {
  // A new file with the mode from the start (no window with the umask's).
  try { fs.unlinkSync(path); } catch (e) { /* absent */ }
  fs.writeFileSync(path, text, { mode: mode, flag: 'wx' });
  fs.chmodSync(path, mode);
}

// Both steps done: write the files asked for, then print.
function accepted(created, registered) {
  var doc = {
    ok: true,
    certificateId: created.certificateId,
    certificatePem: created.certificatePem,
    certificateOwnershipToken: created.certificateOwnershipToken,
    thingName: registered.thingName,
    deviceConfiguration: registered.deviceConfiguration
  };
  if (opt.mode === 'keys') doc.privateKey = created.privateKey;
  try {
    if (opt['out-cert']) writeFile(opt['out-cert'], created.certificatePem || '', 0o644);
    if (opt['out-key']) writeFile(opt['out-key'], created.privateKey || '', 0o600);
  } catch (e) {
    stage = 'output';
    return transportFailure('cannot write the files: ' + e.message);
  }
  finish(doc, EXIT_OK);
}

var overall = setTimeout(function () {
  transportFailure('no answer within ' + timeoutS + ' s');
}, timeoutS * 1000);
overall.unref();
// The SDK's promises do not keep node alive (the samples hold a timer too).
var keepAlive = setInterval(function () {}, 1000);

// ---- the protocol client, as the samples' cli_args.js builds it -------------------
function buildMqtt5() {
  var builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(opt.host, opt.cert, opt.key);
  builder.withPort(port);
  builder.withCertificateAuthorityFromPath(undefined, opt.ca);
  builder.withSessionBehavior(mqtt5.ClientSessionBehavior.RejoinPostSuccess);
  if (opt['client-id']) builder.withConnectProperties({ keepAliveIntervalSeconds: 1200, clientId: opt['client-id'] });
  var c = new mqtt5.Mqtt5Client(builder.build());
  // The client would retry forever; here a refused or failed connection is the end.
  c.on('connectionFailure', function (ev) {
    var s = 'connection failed: ' + errText(ev && ev.error);
    if (ev && ev.connack) s += '; CONNACK reason code ' + ev.connack.reasonCode +
      (ev.connack.reasonString ? ' (' + ev.connack.reasonString + ')' : '');
    transportFailure(s);
  });
  c.on('disconnection', function (ev) {
    var s = 'disconnected: ' + errText(ev && ev.error);
    if (ev && ev.disconnect) s += '; DISCONNECT reason code ' + ev.disconnect.reasonCode;
    transportFailure(s);
  });
  return c;
}

function buildMqtt311() {
  var builder = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(opt.cert, opt.key);
  builder.with_certificate_authority_from_path(undefined, opt.ca);
  builder.with_clean_session(false);
  builder.with_client_id(opt['client-id'] || 'test-' + Math.floor(Math.random() * 100000000));
  builder.with_endpoint(opt.host);
  builder.with_port(port);
  var c = new mqtt.MqttClient().new_connection(builder.build());
  c.on('interrupt', function (e) { transportFailure('connection interrupted: ' + errText(e)); });
  c.on('error', function (e) { transportFailure('connection error: ' + errText(e)); });
  return c;
}

// ---- --api rr: IotIdentityClientv2 (samples/node/fleet_provisioning/{csr,basic}) ---
async function runRequestResponse() {
  var rrOptions = {
    maxRequestResponseSubscriptions: 2,
    maxStreamingSubscriptions: 0,
    operationTimeoutInSeconds: Math.max(1, Math.ceil(timeoutS))
  };
  identity = client5 ? iotidentity.IotIdentityClientv2.newFromMqtt5(client5, rrOptions)
    : iotidentity.IotIdentityClientv2.newFromMqtt311(connection, rrOptions);
  await connect();
  var created, registered;
  stage = 'create';
  try {
    created = opt.mode === 'csr'
      ? await identity.createCertificateFromCsr({ certificateSigningRequest: csrPem })
      : await identity.createKeysAndCertificate({});
  } catch (e) {
    if (e && e.modeledError) return rejected(e.modeledError);
    return transportFailure(errText(e));
  }
  if (done) return;
  stage = 'register';
  var request = { templateName: opt.template, certificateOwnershipToken: created.certificateOwnershipToken };
  if (nparams > 0) request.parameters = opt.params;
  try {
    registered = await identity.registerThing(request);
  } catch (e) {
    if (e && e.modeledError) return rejected(e.modeledError);
    return transportFailure(errText(e));
  }
  accepted(created, registered);
}

// ---- --api pubsub: IotIdentityClient (samples/node/deprecated/fleet_provisioning) --
// subscribe accepted, subscribe rejected, publish; each QoS 1.
function step(subAccepted, subRejected, publish, subRequest, request) {
  return new Promise(function (resolve) {
    (async function () {
      await identity[subAccepted](subRequest, mqtt.QoS.AtLeastOnce, function (error, response) {
        if (error || !response) return transportFailure('bad accepted document: ' + errText(error));
        resolve(response);
      });
      await identity[subRejected](subRequest, mqtt.QoS.AtLeastOnce, function (error, response) {
        if (error || !response) return transportFailure('bad rejected document: ' + errText(error));
        rejected(response);
      });
      await identity[publish](request, mqtt.QoS.AtLeastOnce);
    })().catch(function (e) { transportFailure(errText(e)); });
  });
}

async function runPubSub() {
  identity = client5 ? iotidentity.IotIdentityClient.newFromMqtt5Client(client5)
    : new iotidentity.IotIdentityClient(connection);
  await connect();
  stage = 'create';
  var created = opt.mode === 'csr'
    ? await step('subscribeToCreateCertificateFromCsrAccepted', 'subscribeToCreateCertificateFromCsrRejected',
      'publishCreateCertificateFromCsr', {}, { certificateSigningRequest: csrPem })
    : await step('subscribeToCreateKeysAndCertificateAccepted', 'subscribeToCreateKeysAndCertificateRejected',
      'publishCreateKeysAndCertificate', {}, { toJSON: function () { return {}; } });
  if (done) return;
  stage = 'register';
  var request = { templateName: opt.template, certificateOwnershipToken: created.certificateOwnershipToken };
  // The deprecated sample always sends parameters (JSON.parse of its option).
  request.parameters = opt.params;
  var registered = await step('subscribeToRegisterThingAccepted', 'subscribeToRegisterThingRejected',
    'publishRegisterThing', { templateName: opt.template }, request);
  if (done) return;
  accepted(created, registered);
}

async function connect() {
  if (client5) {
    var ok = new Promise(function (resolve) { client5.once('connectionSuccess', resolve); });
    client5.start();
    await ok;
  } else {
    await connection.connect();
  }
}

(async function main() {
  if (opt.mqtt === '5') client5 = buildMqtt5(); else connection = buildMqtt311();
  if (opt.api === 'rr') await runRequestResponse(); else await runPubSub();
})().catch(function (e) {
  transportFailure(errText(e));
});
