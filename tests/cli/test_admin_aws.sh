#!/usr/bin/env bash
# enroll admin template / thing: AWS fleet provisioning templates (checked
# at creation, with verified claim CAs and an optional HTTPS hook) and the
# things registry. Every refusal is checked for its exit code (docs/cli.md)
# and for leaving the store exactly as it was (sqlite3 dumps, before and
# after).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
D="$WORK/data"

admin() { "$ENROLL" admin "$@" --data "$D"; }
run() { local want=$1 what=$2; shift 2; expect_exit "$want" "$what" admin "$@"; }
# The rows templates and things live in, and the audit trail's length.
snap() {
  sqlite3 "$D/enroll.db" ".dump aws_template aws_template_claim_ca aws_thing aws_certificate aws_ownership_token" \
    "SELECT COUNT(*) FROM audit_event" "SELECT COUNT(*) FROM certificate"
}
# refused WANT WHAT ARGS...: exits WANT and changes nothing.
refused() {
  local want=$1 what=$2; shift 2
  local before after
  before=$(snap)
  run "$want" "$what" "$@"
  after=$(snap)
  [ "$before" == "$after" ] && pass || fail "$what: the store changed"
}

# ---- help ----------------------------------------------------------------------------
for noun in template thing; do
  expect_exit 0 "admin $noun --help" "$ENROLL" admin $noun --help
  contains "$WORK/.out" "Examples:" "admin $noun --help has examples"
  contains "$WORK/.out" "enroll admin $noun" "admin $noun --help names its verbs"
done
expect_exit 0 "admin --help" "$ENROLL" admin --help
contains "$WORK/.out" "template create NAME --file T.json" "admin --help lists template create"
contains "$WORK/.out" "thing list" "admin --help lists thing list"
expect_exit 2 "unknown template verb" "$ENROLL" admin template frob --data "$D"
contains "$WORK/.err" "create, list, show, delete, enable, disable" "unknown verb: lists the verbs"

# ---- a store with an issuing CA, a policy, a verified and an unverified claim CA -----
check "root CA" "$ENROLL" ca init --dir root --subject '/O=Acme/CN=Acme Root CA'
check "ca add" admin ca add issuing --ca-dir root
check "policy" admin policy new p30 --validity P30D --renewal-window P7D --ca issuing
check "factory CA" "$ENROLL" ca init --dir factory --subject '/O=Factory/CN=Factory Claim CA'
check "ca upload factory" admin ca upload factory --cert factory/cert.pem --json
CODE=$(json "$WORK/.out" .verification_code)
check "verification key" "$ENROLL" key new --out v.key
check "verification csr" "$ENROLL" csr new --key v.key --dn "CN=$CODE" --out v.csr
check "verification certificate" "$ENROLL" ca sign --dir factory --profile device --cn "$CODE" v.csr --out v.pem
check "ca verify factory" admin ca verify factory --cert v.pem
check "lab CA" "$ENROLL" ca init --dir lab --subject '/O=Lab/CN=Lab CA'
check "ca upload lab (left unverified)" admin ca upload lab --cert lab/cert.pem

cat > fleet.json <<'JSON'
{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "Floor": {"Type": "Number", "Default": 1}
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]},
        "AttributePayload": {"floor": {"Ref": "Floor"}},
        "ThingGroups": ["sensors"]
      }
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}
    }
  }
}
JSON
# A Ref to a parameter the template never declares: it can never be evaluated.
sed 's/{"Ref": "SerialNumber"}/{"Ref": "Serial"}/' fleet.json > bad-ref.json
printf '{"Resources": {"thing": ' > truncated.json

# ---- refusals, each leaving the store as it was ----------------------------------------
refused 3 "a template that cannot be evaluated" template create fleet --file bad-ref.json --policy p30 --claim-ca factory
contains "$WORK/.err" "Resources.thing.Properties.ThingName" "bad template: the message names the path"
contains "$WORK/.err" "bad-ref.json" "bad template: the message names the file"
refused 3 "a template that is not JSON" template create fleet --file truncated.json --policy p30 --claim-ca factory
contains "$WORK/.err" "truncated.json" "not JSON: names the file"
refused 3 "a missing template file" template create fleet --file nowhere.json --policy p30 --claim-ca factory
refused 2 "a bad template name" template create 'has.dot' --file fleet.json --policy p30 --claim-ca factory
contains "$WORK/.err" "0-9 A-Z a-z _ -" "bad name: gives the rule"
refused 2 "a template name over 36 characters" template create "$(printf 'a%.0s' {1..37})" --file fleet.json \
  --policy p30 --claim-ca factory
refused 1 "an unverified claim CA" template create fleet --file fleet.json --policy p30 --claim-ca factory,lab
contains "$WORK/.err" "not verified yet" "unverified claim CA: message"
contains "$WORK/.err" "enroll admin ca verify lab" "unverified claim CA: says what to do"
refused 1 "an issuing CA as claim CA" template create fleet --file fleet.json --policy p30 --claim-ca issuing
refused 1 "an unknown claim CA" template create fleet --file fleet.json --policy p30 --claim-ca nope
contains "$WORK/.err" "enroll admin ca upload" "unknown claim CA: says what to do"
refused 1 "an unknown policy" template create fleet --file fleet.json --policy p99 --claim-ca factory
refused 2 "a hook over http" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url http://hooks.example.com/pre --hook-ca root/cert.pem
contains "$WORK/.err" "https://" "http hook: message"
# The hook client could never call these: refused at creation, not at every registration.
refused 2 "a hook URL with a query" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url 'https://hooks.example.com/pre?key=1' --hook-ca root/cert.pem
refused 2 "a hook URL with user info" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url 'https://u:p@hooks.example.com/pre' --hook-ca root/cert.pem
refused 2 "a hook without its CA" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url https://hooks.example.com/pre
refused 2 "a hook CA that is no certificate" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url https://hooks.example.com/pre --hook-ca fleet.json
refused 2 "a hook timeout out of range" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-url https://hooks.example.com/pre --hook-ca root/cert.pem --hook-timeout-ms 10
contains "$WORK/.err" "--hook-timeout-ms" "timeout: names the option"
refused 2 "a hook timeout without a hook" template create fleet --file fleet.json --policy p30 --claim-ca factory \
  --hook-timeout-ms 5000
refused 2 "no --file" template create fleet --policy p30 --claim-ca factory
refused 2 "no --claim-ca" template create fleet --file fleet.json --policy p30
refused 2 "an empty claim CA list item" template create fleet --file fleet.json --policy p30 --claim-ca factory,
refused 2 "an option of another noun" template create fleet --file fleet.json --policy p30 --claim-ca factory --hub x

# ---- create, list, show ------------------------------------------------------------------
run 0 "template create" template create fleet --file fleet.json --policy p30 --claim-ca factory --json
same "create: name" "$(json "$WORK/.out" .name)" "fleet"
same "create: claim CAs" "$(json "$WORK/.out" '.claim_cas | join(",")')" "factory"
same "create: no server key generation by default" "$(json "$WORK/.out" .allow_server_keygen)" "false"
same "create: no hook" "$(json "$WORK/.out" .hook)" "null"
same "create: parameters" "$(json "$WORK/.out" '[.parameters[] | .name + ":" + .type] | join(",")')" \
  "SerialNumber:String,Floor:Number"
same "create: a default" "$(json "$WORK/.out" '.parameters[1].default')" "1"
same "the body is stored as given" "$(sqlite3 "$D/enroll.db" "SELECT body FROM aws_template WHERE name = 'fleet'")" \
  "$(cat fleet.json)"
refused 1 "a taken template name" template create fleet --file fleet.json --policy p30 --claim-ca factory
contains "$WORK/.err" "exists already" "taken name: message"
run 0 "template create with a hook" template create hooked --file fleet.json --policy p30 \
  --claim-ca factory --allow-server-keygen --hook-url https://hooks.example.com:8443/pre --hook-ca root/cert.pem --json
same "hook: url" "$(json "$WORK/.out" .hook.url)" "https://hooks.example.com:8443/pre"
same "hook: default timeout" "$(json "$WORK/.out" .hook.timeout_ms)" "5000"
same "hook: the CA is kept (PEM)" "$(json "$WORK/.out" .hook.ca_pem | openssl x509 -noout -subject)" \
  "$(openssl x509 -in root/cert.pem -noout -subject)"
same "keygen allowed" "$(json "$WORK/.out" .allow_server_keygen)" "true"
run 0 "template create: two claim CAs, a timeout" template create two_cas --file fleet.json --policy p30 \
  --claim-ca factory --hook-url https://h.example.com/ --hook-ca root/cert.pem --hook-timeout-ms 2500 --json
same "timeout" "$(json "$WORK/.out" .hook.timeout_ms)" "2500"

run 0 "template list" template list --json
same "list: by name" "$(json "$WORK/.out" '[.[].name] | join(",")')" "fleet,hooked,two_cas"
run 0 "template list (text)" template list
contains "$WORK/.out" "fleet" "list text: names the template"
run 0 "template show" template show fleet --json
same "show: the body" "$(json "$WORK/.out" '.template_body.Resources.thing.Type')" "AWS::IoT::Thing"
same "show: no things yet" "$(json "$WORK/.out" .things)" "0"
run 0 "template show (text)" template show hooked
contains "$WORK/.out" "https://hooks.example.com:8443/pre" "show text: the hook"
refused 1 "template show: unknown" template show nope
refused 2 "template show: a bad name" template show 'no spaces'

# ---- enable, disable, delete -------------------------------------------------------------
run 0 "template disable" template disable fleet --json
same "disable: changed" "$(json "$WORK/.out" .changed)" "true"
same "disabled in the store" "$(sqlite3 "$D/enroll.db" "SELECT enabled FROM aws_template WHERE name = 'fleet'")" "0"
refused 0 "template disable again changes nothing" template disable fleet
run 0 "template enable" template enable fleet --json
same "enable: enabled" "$(json "$WORK/.out" .enabled)" "true"
refused 1 "template enable: unknown" template enable nope
run 0 "template delete" template delete two_cas --json
same "delete: action" "$(json "$WORK/.out" .action)" "deleted"
same "deleted: with its claim CA rows" \
  "$(sqlite3 "$D/enroll.db" "SELECT COUNT(*) FROM aws_template_claim_ca WHERE template = 'two_cas'")" "0"
refused 1 "template delete: again" template delete two_cas
refused 2 "template delete: no name" template delete

# ---- things (RegisterThing writes them; here they are put in by hand) --------------------
sqlite3 "$D/enroll.db" <<'SQL'
PRAGMA foreign_keys = ON;
INSERT INTO certificate (issuer, serial, policy, subject, not_before, not_after, issued_at, spki_sha256, der)
  VALUES ('O=Acme, CN=Acme Root CA', '0A', 'p30', 'CN=sensor-1', 1800000000, 1802592000, 1800000000,
          '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', X'3003020101'),
         ('O=Acme, CN=Acme Root CA', '0B', 'p30', 'CN=sensor-1', 1800000100, 1802592100, 1800000100,
          '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', X'3003020102');
INSERT INTO aws_thing VALUES ('sensor-1', 'fleet', '{"floor":"1"}', '["sensors"]', 'Sensor', 1, 1800000000, 1800000100);
INSERT INTO aws_thing VALUES ('sensor-2', 'hooked', '{}', '[]', NULL, 1, 1800000200, 1800000200);
INSERT INTO aws_certificate VALUES
  ('O=Acme, CN=Acme Root CA', '0A', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sensor-1', 'fleet',
   'superseded', 1800000000, 1800000100),
  ('O=Acme, CN=Acme Root CA', '0B', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'sensor-1', 'fleet',
   'active', 1800000100, 1800000100);
SQL
run 0 "thing list" thing list --json
same "thing list: by name" "$(json "$WORK/.out" '[.[].name] | join(",")')" "sensor-1,sensor-2"
run 0 "thing list --template" thing list --template fleet --json
same "thing list --template: only its things" "$(json "$WORK/.out" '[.[].name] | join(",")')" "sensor-1"
run 0 "thing list (text)" thing list
contains "$WORK/.out" "sensor-2" "thing list text"
refused 2 "thing list: a bad template name" thing list --template 'a b'
run 0 "thing show" thing show sensor-1 --json
same "thing show: attributes" "$(json "$WORK/.out" .attributes.floor)" "1"
same "thing show: groups" "$(json "$WORK/.out" '.thing_groups | join(",")')" "sensors"
same "thing show: certificate statuses" "$(json "$WORK/.out" '[.certificates[] | .serial + ":" + .status] | join(",")')" \
  "0A:superseded,0B:active"
run 0 "thing show (text)" thing show sensor-1
contains "$WORK/.out" "active" "thing show text: the active certificate"
run 0 "template show counts its things" template show fleet --json
same "template show: things" "$(json "$WORK/.out" .things)" "1"
refused 1 "thing show: unknown" thing show sensor-9
refused 2 "thing show: a bad name" thing show 'sensor 1'
run 0 "thing disable" thing disable sensor-1 --json
same "thing disable: changed" "$(json "$WORK/.out" .changed)" "true"
same "thing disabled in the store" "$(sqlite3 "$D/enroll.db" "SELECT enabled FROM aws_thing WHERE name = 'sensor-1'")" "0"
same "its certificates untouched" "$(sqlite3 "$D/enroll.db" "SELECT COUNT(*) FROM certificate WHERE revoked = 1")" "0"
refused 0 "thing disable again changes nothing" thing disable sensor-1
refused 1 "thing disable: unknown" thing disable sensor-9
run 0 "thing enable" thing enable sensor-1 --json
same "thing enable: enabled" "$(json "$WORK/.out" .enabled)" "true"

# ---- the audit trail -----------------------------------------------------------------------
AUDIT=$(sqlite3 "$D/enroll.db" "SELECT kind FROM audit_event WHERE kind LIKE 'admin.t%' ORDER BY id" | tr '\n' ' ')
same "audit events" "$AUDIT" \
  "admin.template.create admin.template.create admin.template.create admin.template.disable admin.template.enable admin.template.delete admin.thing.disable admin.thing.enable "
contains <(sqlite3 "$D/enroll.db" "SELECT detail FROM audit_event WHERE kind = 'admin.template.create' LIMIT 1") \
  "(enroll admin, user" "audit: names the actor"

same "integrity_check" "$(sqlite3 "$D/enroll.db" 'PRAGMA integrity_check')" "ok"
same "foreign keys hold" "$(sqlite3 "$D/enroll.db" 'PRAGMA foreign_key_check' | wc -l)" "0"
finish
