/* swarm_auth.h — an optional shared swarm secret. Knowing the info-hash is not enough to download: after the
 * BEP 10 handshakes each side proves knowledge of the secret with
 *   HMAC-SHA256(secret, "diskswarm-auth-v1" || peer's nonce || info-hash || own peer id)
 * over the fresh nonce the other side sent in its extension handshake, so a proof cannot be replayed on
 * another connection. Until a peer has proved it, it gets no data and none is taken from it. */
#ifndef DS_SWARM_AUTH_H
#define DS_SWARM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define SWARM_NONCE_LEN 16
#define SWARM_MAC_LEN 32
#define SWARM_SECRET_MIN 16

int swarm_auth_mac(const uint8_t *secret, size_t secret_len, const uint8_t nonce[SWARM_NONCE_LEN],
                   const uint8_t info_hash[20], const uint8_t peer_id[20], uint8_t out[SWARM_MAC_LEN]);
/* Constant-time comparison. */
int swarm_auth_equal(const uint8_t a[SWARM_MAC_LEN], const uint8_t b[SWARM_MAC_LEN]);

#endif
