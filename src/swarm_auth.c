#include "swarm_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

int swarm_auth_mac(const uint8_t *secret, size_t secret_len, const uint8_t nonce[SWARM_NONCE_LEN],
                   const uint8_t info_hash[20], const uint8_t peer_id[20], uint8_t out[SWARM_MAC_LEN])
{
    static const char label[] = "diskswarm-auth-v1";
    uint8_t msg[sizeof label - 1 + SWARM_NONCE_LEN + 20 + 20];
    size_t n = 0;
    memcpy(msg + n, label, sizeof label - 1);
    n += sizeof label - 1;
    memcpy(msg + n, nonce, SWARM_NONCE_LEN);
    n += SWARM_NONCE_LEN;
    memcpy(msg + n, info_hash, 20);
    n += 20;
    memcpy(msg + n, peer_id, 20);
    n += 20;
    unsigned int len = 0;
    if (secret_len > (size_t)INT32_MAX ||
        !HMAC(EVP_sha256(), secret, (int)secret_len, msg, n, out, &len) || len != SWARM_MAC_LEN)
        return -1;
    return 0;
}

int swarm_auth_equal(const uint8_t a[SWARM_MAC_LEN], const uint8_t b[SWARM_MAC_LEN])
{
    return CRYPTO_memcmp(a, b, SWARM_MAC_LEN) == 0;
}
