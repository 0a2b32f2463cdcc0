/* sha1.h — SHA-1 through OpenSSL libcrypto (EVP), incremental and one-shot. */
#ifndef DS_SHA1_H
#define DS_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_LEN 20

struct sha1_ctx {
    void *evp;   /* EVP_MD_CTX* */
};

int sha1_init(struct sha1_ctx *c);                         /* 0 or -1 */
int sha1_update(struct sha1_ctx *c, const void *p, size_t n);
int sha1_final(struct sha1_ctx *c, uint8_t out[SHA1_LEN]); /* also releases the context */
void sha1_abort(struct sha1_ctx *c);                       /* release without a result */
int sha1(const void *p, size_t n, uint8_t out[SHA1_LEN]);
void hex_encode(const uint8_t *p, size_t n, char *out);    /* out holds 2n+1 chars, lowercase */

#endif
