/*
 * sb_rdkafka.h - res_kafka's own declarations of the librdkafka C ABI that
 * rdk.go uses, and nothing more.
 *
 * Written for librdkafka 2.x: at least 2.0.0, below 3.0.0. res_kafka checks
 * rd_kafka_version() of the linked library against that range when it
 * starts (rdkversion.go), and rdkabi_test.go compiles these declarations and
 * the header of the linked librdkafka side by side and fails on any
 * difference in a constant, a type, a struct layout or a prototype.
 *
 * Layout rules (rdkabi_test.go parses this file):
 *   - constants are object-like macros named RD_KAFKA_*, one per line;
 *   - librdkafka's enum types are declared as the integer type a C compiler
 *     gives such an enum (int when a member is negative, else unsigned int),
 *     their members as macros;
 *   - handles are typedefs of incomplete struct types;
 *   - one declaration per statement, structs with one field per line.
 *
 * With SB_RDKAFKA_PROTOTYPES_ONLY defined only the prototypes are declared
 * (the test uses it to redeclare them after librdkafka's own header).
 */
#ifndef SB_RDKAFKA_H
#define SB_RDKAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef SB_RDKAFKA_PROTOTYPES_ONLY

/* Handles: librdkafka allocates them, we only pass pointers around. */
typedef struct sb_rk rd_kafka_t;
typedef struct sb_rk_topic rd_kafka_topic_t;
typedef struct sb_rk_conf rd_kafka_conf_t;
typedef struct sb_rk_topic_conf rd_kafka_topic_conf_t;
typedef struct sb_rk_queue rd_kafka_queue_t;
typedef struct sb_rk_event rd_kafka_event_t;
typedef struct sb_rk_headers rd_kafka_headers_t;
typedef struct sb_rk_error rd_kafka_error_t;

/* Error code (an enum in librdkafka; it has negative members). */
typedef int rd_kafka_resp_err_t;
#define RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC (-188)
#define RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS (-177)
#define RD_KAFKA_RESP_ERR__QUEUE_FULL (-184)
#define RD_KAFKA_RESP_ERR__FATAL (-150)

/* Client type given to rd_kafka_new. */
typedef unsigned int rd_kafka_type_t;
#define RD_KAFKA_PRODUCER 0

/* Result of rd_kafka_conf_set. */
typedef int rd_kafka_conf_res_t;
#define RD_KAFKA_CONF_OK 0

/* Whether the broker may have stored a message (rd_kafka_message_status). */
typedef unsigned int rd_kafka_msg_status_t;
#define RD_KAFKA_MSG_STATUS_NOT_PERSISTED 0
#define RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED 1
#define RD_KAFKA_MSG_STATUS_PERSISTED 2

/* Event type bits, for rd_kafka_conf_set_events and rd_kafka_event_type. */
typedef int rd_kafka_event_type_t;
#define RD_KAFKA_EVENT_DR 0x1
#define RD_KAFKA_EVENT_LOG 0x4
#define RD_KAFKA_EVENT_ERROR 0x8
#define RD_KAFKA_EVENT_STATS 0x40

/* Partition value that lets the partitioner choose. */
#define RD_KAFKA_PARTITION_UA ((int32_t)-1)

/* Produce flag: librdkafka copies key and value before returning. */
#define RD_KAFKA_MSG_F_COPY 0x2

/* rd_kafka_purge flags. */
#define RD_KAFKA_PURGE_F_QUEUE 0x1
#define RD_KAFKA_PURGE_F_INFLIGHT 0x2
#define RD_KAFKA_PURGE_F_NON_BLOCKING 0x4

/*
 * rd_kafka_producev takes (tag, argument...) groups after the handle and
 * ends with the END tag alone. Each tag is passed as an rd_kafka_vtype_t;
 * the arguments that follow it:
 *   RKT        rd_kafka_topic_t *
 *   PARTITION  int32_t
 *   VALUE      void *, size_t
 *   KEY        void *, size_t
 *   OPAQUE     void *
 *   MSGFLAGS   int
 *   HEADERS    rd_kafka_headers_t * (librdkafka owns it once accepted)
 */
typedef unsigned int rd_kafka_vtype_t;
#define RD_KAFKA_VTYPE_END 0
#define RD_KAFKA_VTYPE_RKT 2
#define RD_KAFKA_VTYPE_PARTITION 3
#define RD_KAFKA_VTYPE_VALUE 4
#define RD_KAFKA_VTYPE_KEY 5
#define RD_KAFKA_VTYPE_OPAQUE 6
#define RD_KAFKA_VTYPE_MSGFLAGS 7
#define RD_KAFKA_VTYPE_HEADERS 10

/*
 * A message as a delivery report hands it back. Every field is declared
 * because the layout must be exact; rdk.go reads err, rkt, partition, len,
 * key_len, offset and _private (the opaque given when producing) of
 * delivery reports, and fills payload, len, key, key_len and _private for
 * rd_kafka_produce_batch.
 */
typedef struct sb_rk_message {
	rd_kafka_resp_err_t err;
	rd_kafka_topic_t *rkt;
	int32_t partition;
	void *payload;
	size_t len;
	void *key;
	size_t key_len;
	int64_t offset;
	void *_private;
} rd_kafka_message_t;

#endif /* SB_RDKAFKA_PROTOTYPES_ONLY */

/* Library version: 0xMMmmrrpp (major, minor, revision, pre-release 0xff = final). */
int rd_kafka_version(void);

/* Errors. */
const char *rd_kafka_err2str(rd_kafka_resp_err_t code);
const char *rd_kafka_err2name(rd_kafka_resp_err_t code);
rd_kafka_resp_err_t rd_kafka_last_error(void);
rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *buf, size_t bufsize);
/*
 * Raises a fatal error with the given code on purpose (librdkafka prefixes
 * the reason with "test_fatal_error: "); returns 0, or
 * RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS when the instance had a fatal error
 * already.
 */
rd_kafka_resp_err_t rd_kafka_test_fatal_error(rd_kafka_t *rk, rd_kafka_resp_err_t code, const char *reason);

/* Configuration. */
rd_kafka_conf_t *rd_kafka_conf_new(void);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *buf, size_t bufsize);
void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int mask);
/* A queue of its own for SASL callbacks (OAUTHBEARER token refreshes). */
void rd_kafka_conf_enable_sasl_queue(rd_kafka_conf_t *conf, int enable);

/* Client instance and topics. */
rd_kafka_t *rd_kafka_new(rd_kafka_type_t kind, rd_kafka_conf_t *conf, char *buf, size_t bufsize);
void rd_kafka_destroy(rd_kafka_t *rk);
const char *rd_kafka_name(const rd_kafka_t *rk);
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *name, rd_kafka_topic_conf_t *tconf);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);

/* Queues. */
rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
void rd_kafka_queue_destroy(rd_kafka_queue_t *q);
rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *q, int timeout_ms);
void rd_kafka_queue_io_event_enable(rd_kafka_queue_t *q, int fd, const void *data, size_t datalen);
rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *q);
/*
 * Serves the SASL queue on librdkafka's background thread (needs
 * rd_kafka_conf_enable_sasl_queue); returns NULL or an error to destroy.
 */
rd_kafka_error_t *rd_kafka_sasl_background_callbacks_enable(rd_kafka_t *rk);

/* Error objects. */
const char *rd_kafka_error_string(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);

/* Producing. */
int rd_kafka_produce(rd_kafka_topic_t *rkt, int32_t partition, int flags, void *val, size_t vlen, const void *key, size_t klen, void *opaque);
rd_kafka_resp_err_t rd_kafka_producev(rd_kafka_t *rk, ...);
/*
 * Queues message_cnt messages of one topic in one call: of each element it
 * reads payload, len, key, key_len and _private (the opaque), and sets err
 * (0 when queued). With RD_KAFKA_PARTITION_UA the partitioner runs for each
 * message. No headers. Returns how many were queued; after a queue-full
 * refusal every later element has that error too and was not queued.
 */
int rd_kafka_produce_batch(rd_kafka_topic_t *rkt, int32_t partition, int msgflags, rd_kafka_message_t *rkmessages, int message_cnt);
int rd_kafka_outq_len(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int flags);

/* Headers. */
rd_kafka_headers_t *rd_kafka_headers_new(size_t count);
void rd_kafka_headers_destroy(rd_kafka_headers_t *hs);
rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hs, const char *name, ssize_t namelen, const void *val, ssize_t vallen);

/* Messages and events. */
rd_kafka_msg_status_t rd_kafka_message_status(const rd_kafka_message_t *msg);
rd_kafka_event_type_t rd_kafka_event_type(const rd_kafka_event_t *ev);
void rd_kafka_event_destroy(rd_kafka_event_t *ev);
const rd_kafka_message_t *rd_kafka_event_message_next(rd_kafka_event_t *ev);
rd_kafka_resp_err_t rd_kafka_event_error(rd_kafka_event_t *ev);
const char *rd_kafka_event_error_string(rd_kafka_event_t *ev);
int rd_kafka_event_error_is_fatal(rd_kafka_event_t *ev);
int rd_kafka_event_log(rd_kafka_event_t *ev, const char **facility, const char **text, int *level);
const char *rd_kafka_event_stats(rd_kafka_event_t *ev);

#endif /* SB_RDKAFKA_H */
