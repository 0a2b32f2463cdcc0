/* netboot.h — `serve --netboot`: network boot for blank machines.
 *
 * dnsmasq (run as a child process, options on its command line, no config file) answers DHCP — as the DHCP
 * server of a range, or as a proxy DHCP beside an existing one — and hands PXE firmware iPXE (undionly.kpxe over
 * TFTP from Debian's ipxe package) and iPXE clients the URL of a boot script served here over HTTP:
 *   GET /netboot/boot.ipxe[?mac=MAC]   the iPXE script: chain to itself with the MAC, then either kernel +
 *                                      initramfs with the deploy options on the kernel command line, or — once
 *                                      that MAC has reported a finished deploy — "boot from the local disk"
 *   GET /netboot/vmlinuz, /netboot/initrd.img   the client boot environment (netboot/build-bootenv.sh)
 *   GET /netboot/report?mac=MAC&state=STATE[&ip=IP][&disk=DEV][&msg=TEXT]   what the initramfs reports
 *   GET /netboot.json                  the machines seen, for the dashboard
 * The machine table lives in memory: a server restarted forgets which machines are done (they deploy again).
 * Thread-safe: the HTTP routes run on libmicrohttpd's thread and lock the table. */
#ifndef DS_NETBOOT_H
#define DS_NETBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tracker_http.h"

struct netboot_config {
    const char *boot_dir;      /* holds vmlinuz and initrd.img */
    const char *server_addr;   /* the IPv4 address machines reach this server at */
    unsigned http_port;        /* serve's HTTP port */
    const char *dhcp_range;    /* "START,END[,NETMASK]": be the DHCP server; NULL: proxy DHCP beside another */
    const char *iface;         /* dnsmasq's interface (NULL: every interface but lo) */
    const char *disk;          /* ds.disk= for the clients ("auto": the first fixed disk) */
    const char *then;          /* ds.then= reboot | poweroff */
    const char *kernel_args;   /* more kernel command line (NULL: none) */
    const char *dnsmasq;       /* program (NULL: "dnsmasq" on PATH) */
    const char *tftp_root;     /* directory with undionly.kpxe (NULL: /usr/lib/ipxe when it has it) */
    bool no_dhcp;              /* start no dnsmasq: the site's own DHCP server points iPXE at /netboot/boot.ipxe */
};

struct netboot;

/* Loads the boot files, starts dnsmasq (unless no_dhcp) and checks it is still running shortly after. */
int netboot_start(struct netboot **out, const struct netboot_config *c, struct ds_err *e);
/* The HTTP routes above; false when the path is not one of them. */
bool netboot_http(struct netboot *nb, const char *path, size_t plen, const char *query, size_t qlen,
                  struct tracker_http_reply *r);
/* false once dnsmasq has exited by itself (its messages went to stderr); true with no_dhcp. */
bool netboot_alive(struct netboot *nb);
/* Machines that reported a finished deploy and have since network-booted again (told to boot their disk). */
size_t netboot_local_boots(struct netboot *nb);
#define NETBOOT_REBOOT_WAIT_S 300   /* serve --expect: longest wait for the machines' reboot after the swarm */
/* Stops dnsmasq (SIGTERM, then SIGKILL after 3 s) and frees everything. NULL is fine. */
void netboot_stop(struct netboot *nb);

/* Helpers, exposed for unit tests. */
/* "52:54:00:AB:cd:01" or "52-54-00-ab-cd-01" → "52:54:00:ab:cd:01"; -1 if it is not a MAC. */
int netboot_norm_mac(const char *s, size_t len, char out[18]);
/* value of key in an URL query, percent-decoded, cut to printable ASCII; false when absent or malformed. */
bool netboot_query(const char *q, size_t qlen, const char *key, char *out, size_t cap);

#endif
