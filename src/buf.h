/* buf.h — a growable byte buffer with a read cursor, used by encoders and the per-connection I/O queues. */
#ifndef DS_BUF_H
#define DS_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len;   /* bytes stored, data[0..len) */
    size_t off;   /* read cursor: unread bytes are data[off..len) */
    size_t cap;
};

/* All functions that may allocate return 0 on success, -1 on allocation failure. */
int buf_reserve(struct buf *b, size_t extra);          /* ensure room for `extra` more bytes after len */
int buf_put(struct buf *b, const void *p, size_t n);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_be32(struct buf *b, uint32_t v);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint8_t *buf_tail(struct buf *b, size_t n);           /* reserve n bytes, advance len, return pointer to them (NULL on OOM) */

static inline size_t buf_unread(const struct buf *b) { return b->len - b->off; }
static inline const uint8_t *buf_head(const struct buf *b)
{
    static const uint8_t empty[1];
    return b->data ? b->data + b->off : empty; /* never arithmetic on NULL for a never-used buffer */
}
void buf_consume(struct buf *b, size_t n);            /* advance off; compacts when everything is read */
void buf_compact(struct buf *b);                      /* move unread bytes to the front */
void buf_clear(struct buf *b);
void buf_free(struct buf *b);
/* Detach the contents as a NUL-terminated malloc'd string (buffer becomes empty). NULL on OOM. */
char *buf_steal_str(struct buf *b);

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }

#endif
