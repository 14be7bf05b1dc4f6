/* enroll cert show, enroll verify. */
#ifndef ENROLL_CLI_CERT_H
#define ENROLL_CLI_CERT_H

int cli_cert(int argc, char **argv);
int cli_crl(int argc, char **argv);
int cli_verify(int argc, char **argv);

#endif
