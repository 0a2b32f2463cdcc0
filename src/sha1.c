/* sha1.c — SHA-1 through OpenSSL libcrypto's EVP interface. */
#include "sha1.h"

#include <openssl/evp.h>

int sha1_init(struct sha1_ctx *c)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        c->evp = NULL;
        return -1;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        c->evp = NULL;
        return -1;
    }
    c->evp = ctx;
    return 0;
}

int sha1_update(struct sha1_ctx *c, const void *p, size_t n)
{
    if (!c->evp)
        return -1;
    if (n == 0)
        return 0;
    return EVP_DigestUpdate((EVP_MD_CTX *)c->evp, p, n) == 1 ? 0 : -1;
}

int sha1_final(struct sha1_ctx *c, uint8_t out[SHA1_LEN])
{
    if (!c->evp)
        return -1;
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex((EVP_MD_CTX *)c->evp, out, &len) == 1 && len == SHA1_LEN;
    EVP_MD_CTX_free((EVP_MD_CTX *)c->evp);
    c->evp = NULL;
    return ok ? 0 : -1;
}

void sha1_abort(struct sha1_ctx *c)
{
    if (c->evp) {
        EVP_MD_CTX_free((EVP_MD_CTX *)c->evp);
        c->evp = NULL;
    }
}

int sha1(const void *p, size_t n, uint8_t out[SHA1_LEN])
{
    struct sha1_ctx c;
    if (sha1_init(&c))
        return -1;
    if (sha1_update(&c, p, n)) {
        sha1_abort(&c);
        return -1;
    }
    return sha1_final(&c, out);
}

void hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}
