/* Keeps every issuing CA's CRL current where brokers read it (enrolld's
 * "crl" config): a thread with its own store connection that looks at each
 * CA's revocations every few seconds, writes a fresh CRL atomically when
 * one reached the store (from enrolld's admin API, `enroll admin` or
 * another node) or when half the published CRL's validity has passed, and
 * then runs the configured reload command so the broker rereads it. */
#ifndef ENROLL_SERVICE_CRL_PUBLISHER_H
#define ENROLL_SERVICE_CRL_PUBLISHER_H

#include "enroll/error.h"
#include "enroll/service.h"

typedef struct crl_publisher crl_publisher;

/* Publishes every CA's CRL once before it returns (a broker started after
 * enrolld finds its file), then keeps them current. CFG must outlive it. */
enr_code crl_publisher_start(const enr_service_config *cfg, crl_publisher **out, enr_error *err);
void crl_publisher_stop(crl_publisher *p);

#endif
