/* The provisioning core's AWS IoT fleet provisioning side: what a claim
 * certificate or a thing's own certificate may do through AWS's MQTT API
 * (CreateCertificateFromCsr, CreateKeysAndCertificate, RegisterThing),
 * whatever carried the request. The front end (src/service/aws_mqtt.c)
 * hands over the TLS peer and the PUBLISH it read; this module answers with
 * the encoded answer document (accepted or rejected, in the request's
 * format) and the answer topic's sense. Nothing here knows MQTT.
 *
 * Every step that blocks (the store's reads and writes, signing, the
 * pre-provisioning hook's HTTPS call of up to its timeout) runs on a small
 * pool of threads, each with its own store connection, never on an event
 * loop: a slow hook delays one device, not the loop's other connections.
 * Completions come back on the loop that asked.
 *
 *   connect:  enr_aws_authenticate(loop, cert, chain) -> peer
 *             (a thing's live active certificate: a device renewing; else a
 *             claim chaining to a claim CA of one or more enabled templates)
 *   request:  enr_aws_submit(loop, peer, call, format, template, payload)
 *             -> decode -> CreateCertificate*: template, CSR gates, policy,
 *                sign, pending + ownership token (one transaction)
 *             -> RegisterThing: template, token checks, hook, evaluate,
 *                register (one transaction: activate, supersede + revoke)
 *
 * Shutting down, in this order: the front ends cancel what they wait for
 * (enr_aws_cancel) and stop; enr_aws_core_stop (the threads finish what
 * they hold and go); enr_aws_loop_free on every loop; enr_aws_core_free. */
#ifndef ENROLL_PROVISION_AWS_H
#define ENROLL_PROVISION_AWS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "enroll/aws_fleet.h"
#include "enroll/error.h"
#include "enroll/store.h"

struct event_base;

typedef struct enr_aws_core enr_aws_core;
typedef struct enr_aws_loop enr_aws_loop;
typedef struct enr_aws_call enr_aws_call;

typedef struct enr_aws_core_options {
    const char *store_location;          /* the store */
    int threads;                   /* 1..64; 0: ENR_AWS_THREADS_DEFAULT */
    int queue_max;                 /* requests waiting for a thread; beyond: 429 (CONNECTs: at most
                                    * half of it, beyond: server unavailable). 0: default */
    int sweep_interval_seconds;    /* how often pending certificates whose token expired are
                                    * revoked (one thread, bounded batches); 0: 60 */
} enr_aws_core_options;

#define ENR_AWS_THREADS_DEFAULT 4
#define ENR_AWS_QUEUE_DEFAULT 256

/* Read from any thread (for /metrics). */
typedef struct enr_aws_counters {
    _Atomic unsigned long connects_accepted, connects_refused;
    _Atomic unsigned long created;       /* certificates made pending (both Create calls) */
    _Atomic unsigned long registered;    /* RegisterThing accepted */
    _Atomic unsigned long rejected;      /* requests answered on .../rejected */
    _Atomic unsigned long throttled;     /* of them: the queue was full */
    _Atomic unsigned long hook_refused;  /* of them: the hook said no, failed or timed out */
    _Atomic unsigned long swept;         /* pending certificates revoked unactivated */
} enr_aws_counters;

enr_code enr_aws_core_new(const enr_aws_core_options *opts, enr_aws_core **out, enr_error *err);
/* The threads finish the request each holds, the rest are answered 503,
 * and they go. Idempotent. */
void enr_aws_core_stop(enr_aws_core *core);
void enr_aws_core_free(enr_aws_core *core);
const enr_aws_counters *enr_aws_core_counters(const enr_aws_core *core);

/* One per event loop: where completions are delivered. */
enr_code enr_aws_loop_new(enr_aws_core *core, struct event_base *base, enr_aws_loop **out, enr_error *err);
void enr_aws_loop_free(enr_aws_loop *loop);

/* What a connection proved at CONNECT. */
typedef enum enr_aws_peer_kind {
    ENR_AWS_PEER_NONE = 0,
    ENR_AWS_PEER_CLAIM,            /* a claim certificate: may provision under `templates` */
    ENR_AWS_PEER_THING             /* a thing's own active certificate: renews `thing_name` */
} enr_aws_peer_kind;

#define ENR_AWS_PEER_TEMPLATES_MAX 16

typedef struct enr_aws_peer {
    enr_aws_peer_kind kind;
    char fingerprint[ENR_STORE_SPKI_HEX + 1];  /* SHA-256 of the client certificate's DER */
    char client_id[ENR_STORE_ID_MAX + 1];      /* the MQTT client id (the hook's clientId) */
    /* CLAIM: the enabled templates one of whose claim CAs the certificate
     * chains to; THING: the template the thing was provisioned by. */
    char templates[ENR_AWS_PEER_TEMPLATES_MAX][ENR_STORE_TEMPLATE_NAME_MAX + 1];
    size_t template_count;
    char thing_name[ENR_STORE_THING_NAME_MAX + 1]; /* THING */
} enr_aws_peer;

/* The template a peer may use for `name`; false when it is not its own. */
bool enr_aws_peer_may_use(const enr_aws_peer *peer, const char *name);

/* Why a request or connect was refused, for metrics and logs (the device
 * reads statusCode and errorCode). */
typedef struct enr_aws_outcome {
    bool accepted;
    int status;                    /* AWS's statusCode: 200 when accepted */
    const char *error_code;        /* AWS's errorCode; NULL when accepted */
    const char *message;           /* for the device and the log (never a key or token) */
    enr_reason reason;             /* the typed reason of a refusal by a rule, else ENR_R_NONE */
    const uint8_t *answer;         /* the encoded document, valid during the callback */
    size_t answer_len;
    const enr_aws_peer *peer;      /* enr_aws_authenticate: what was proved (accepted) */
    enr_aws_fleet_call call;
} enr_aws_outcome;

typedef void (*enr_aws_done_fn)(void *ctx, const enr_aws_outcome *outcome);

/* CONNECT: who the peer is. `cert` and `chain` are taken (up-ref'd); done
 * comes from the loop (also for a refusal: status 403, or 503 when the
 * store cannot say). */
enr_aws_call *enr_aws_authenticate(enr_aws_loop *loop, X509 *cert, STACK_OF(X509) *chain, const char *client_id,
                                   enr_aws_done_fn done, void *ctx);

typedef struct enr_aws_request {
    const enr_aws_peer *peer;               /* copied */
    const enr_aws_fleet_topic *topic;       /* a REQUEST topic (classified by the front end) */
    /* CreateCertificate* from a claim bound to several templates: the one
     * whose RegisterThing answers the connection subscribed to, or "". */
    const char *template_hint;
    const uint8_t *payload;                 /* copied */
    size_t payload_len;
} enr_aws_request;

/* A request; done always comes later, from the loop (never before this
 * returns). NULL only when out of memory (nothing will be called). */
enr_aws_call *enr_aws_submit(enr_aws_loop *loop, const enr_aws_request *req, enr_aws_done_fn done, void *ctx);

/* The front end's peer went away: done will not be called. What the
 * thread is doing goes on (it is committed or not, as the store says). */
void enr_aws_cancel(enr_aws_call *call);

#endif
