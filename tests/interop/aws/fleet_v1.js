// AWS IoT fleet provisioning by claim (the CSR flow), done by AWS's older
// Node SDK, aws-iot-device-sdk v1 (MQTT 3.1.1 over mqtt.js 4; pinned by
// package-lock.json, used as shipped), against whatever serves the endpoint:
// enrolld in our tests.
//
//   node fleet_v1.js --host H --port N --ca CA.pem --cert CLAIM.pem --key CLAIM.key
//        --template NAME [--param K=V]... --mode csr --csr DEV.csr
//        [--client-id ID] [--timeout SECONDS] [--out-cert FILE]
//
// The v1 SDK has no identity client: as AWS's MQTT API documentation for
// fleet provisioning describes, its `device` subscribes to .../accepted and
// .../rejected (QoS 1), publishes the request (QoS 1) and waits for one of the
// two; then it unsubscribes and does the same for RegisterThing. The
// RegisterThing body also carries "templateName" (as some v1-era samples do:
// the server must ignore keys it does not know).
//
// One JSON line on stdout, as fleet_v2.js:
//   {"ok":true,"certificateId","certificatePem","certificateOwnershipToken","thingName","deviceConfiguration"}
//   {"ok":false,"stage":"create|register","statusCode","errorCode","errorMessage"}
//   {"ok":false,"stage":"connect|create|register","transport":"..."}
// Exit status: 0 accepted, 1 rejected, 2 bad usage or a transport failure
// (default --timeout 30 s).
//
// Plain CommonJS for Node 18 and later.
'use strict';

var fs = require('fs');

var EXIT_OK = 0, EXIT_REJECTED = 1, EXIT_FAIL = 2;

function usage(msg) {
  process.stderr.write('fleet_v1.js: ' + msg + '\n' +
    'usage: node fleet_v1.js --host H --port N --ca CA --cert CERT --key KEY --template NAME\n' +
    '         [--param K=V]... --mode csr --csr FILE [--client-id ID] [--timeout S] [--out-cert F]\n');
  process.exit(EXIT_FAIL);
}

var opt = { mode: 'csr', timeout: '30', params: {} };
var known = ['host', 'port', 'ca', 'cert', 'key', 'template', 'mode', 'csr', 'client-id', 'timeout', 'out-cert'];
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
    } else if (known.indexOf(name) >= 0) {
      opt[name] = value;
    } else {
      usage('unknown option --' + name);
    }
  }
})(process.argv.slice(2));

['host', 'port', 'ca', 'cert', 'key', 'template', 'csr'].forEach(function (n) {
  if (!opt[n]) usage('--' + n + ' is required');
});
if (opt.mode !== 'csr') usage('fleet_v1.js does --mode csr only');
var port = Number(opt.port);
if (!(port > 0 && port < 65536 && Math.floor(port) === port)) usage('bad --port ' + opt.port);
var timeoutS = Number(opt.timeout);
if (!(timeoutS > 0)) usage('bad --timeout ' + opt.timeout);
var csrPem;
try { csrPem = fs.readFileSync(opt.csr, 'utf8'); } catch (e) { usage('cannot read --csr: ' + e.message); }
['ca', 'cert', 'key'].forEach(function (n) {
  try { fs.accessSync(opt[n], fs.constants.R_OK); } catch (e) { usage('cannot read --' + n + ': ' + e.message); }
});

var awsIot = require('aws-iot-device-sdk');

var CSR_TOPIC = '$aws/certificates/create-from-csr/json';
var REGISTER_TOPIC = '$aws/provisioning-templates/' + opt.template + '/provision/json';

var done = false;
var stage = 'connect';
var device;

function finish(doc, code) {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(doc) + '\n');
  setTimeout(function () { process.exit(code); }, 2000).unref();
  try {
    device.end(false, function () { process.exit(code); });
  } catch (e) {
    process.exit(code);
  }
}

function transportFailure(what) {
  finish({ ok: false, stage: stage, transport: String(what) }, EXIT_FAIL);
}

var overall = setTimeout(function () {
  transportFailure('no answer within ' + timeoutS + ' s');
}, timeoutS * 1000);
overall.unref();

device = awsIot.device({
  keyPath: opt.key,
  certPath: opt.cert,
  caPath: opt.ca,
  clientId: opt['client-id'] || 'fleet-v1-' + Math.floor(Math.random() * 100000000),
  host: opt.host,
  port: port,
  protocol: 'mqtts'
});

// The SDK reconnects by itself; here a failed or dropped connection is the end.
device.on('error', function (e) {
  var s = 'connection error: ' + (e && e.message ? e.message : String(e));
  if (e && e.code !== undefined) s += ' (code ' + e.code + ')';
  transportFailure(s);
});
device.on('offline', function () { transportFailure('connection went offline'); });
device.on('close', function () { transportFailure('connection closed'); });

// One request: subscribe TOPIC/accepted and TOPIC/rejected, publish BODY to
// TOPIC, resolve with the accepted document (a rejection ends the run).
var waiting = null;
function request(topic, body) {
  return new Promise(function (resolve) {
    waiting = { topic: topic, resolve: resolve };
    device.subscribe([topic + '/accepted', topic + '/rejected'], { qos: 1 }, function (err, granted) {
      if (err) return transportFailure('subscribe failed: ' + err.message);
      for (var i = 0; granted && i < granted.length; i++) {
        if (granted[i].qos === 128) return transportFailure('subscription refused for ' + granted[i].topic);
      }
      device.publish(topic, JSON.stringify(body), { qos: 1 }, function (err2) {
        if (err2) transportFailure('publish failed: ' + err2.message);
      });
    });
  });
}

device.on('message', function (topic, payload) {
  if (!waiting || done) return;
  var doc;
  try { doc = JSON.parse(payload.toString('utf8')); } catch (e) {
    return transportFailure('not JSON on ' + topic + ': ' + payload.toString('utf8').slice(0, 200));
  }
  var w = waiting;
  if (topic === w.topic + '/accepted') {
    waiting = null;
    device.unsubscribe([w.topic + '/accepted', w.topic + '/rejected'], function () {
      w.resolve(doc);
    });
  } else if (topic === w.topic + '/rejected') {
    waiting = null;
    finish({ ok: false, stage: stage, statusCode: doc.statusCode, errorCode: doc.errorCode,
      errorMessage: doc.errorMessage }, EXIT_REJECTED);
  }
});

device.on('connect', function () {
  if (stage !== 'connect') return;
  stage = 'create';
  request(CSR_TOPIC, { certificateSigningRequest: csrPem }).then(function (created) {
    stage = 'register';
    return request(REGISTER_TOPIC, {
      certificateOwnershipToken: created.certificateOwnershipToken,
      parameters: opt.params,
      templateName: opt.template
    }).then(function (registered) {
      if (opt['out-cert']) {
        try {
          try { fs.unlinkSync(opt['out-cert']); } catch (e) { /* absent */ }
          fs.writeFileSync(opt['out-cert'], created.certificatePem || '', { mode: 0o644, flag: 'wx' });
        } catch (e) {
          stage = 'output';
          return transportFailure('cannot write --out-cert: ' + e.message);
        }
      }
      finish({
        ok: true,
        certificateId: created.certificateId,
        certificatePem: created.certificatePem,
        certificateOwnershipToken: created.certificateOwnershipToken,
        thingName: registered.thingName,
        deviceConfiguration: registered.deviceConfiguration
      }, EXIT_OK);
    });
  }).catch(function (e) { transportFailure(e && e.message ? e.message : String(e)); });
});
