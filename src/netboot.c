/* netboot.c — `serve --netboot` (see netboot.h).
 *
 * Why the server decides "deploy" or "boot from disk" per MAC: a blank machine keeps network boot first in its
 * firmware order, so nothing on the machine (no efibootmgr, no BIOS setting) has to change after the deploy; the
 * initramfs reports `done` only after `diskswarm deploy` exited 0 (every piece verified, synced), and from then on
 * this machine's next network boot is answered with iPXE's "boot the first local disk" (`sanboot --drive 0x80`,
 * falling back to `exit`, which hands back to the firmware's next boot device). A machine that failed is offered
 * the deploy again on its next boot. */
#include "netboot.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"

#define NB_MAX_MACHINES 4096
#define NB_MAX_FILE ((size_t)512 << 20)
#define NB_MSG 200
#define NB_MAX_ARGS 40

struct nb_machine {
    char mac[18];
    char ip[48];
    char state[16];            /* booting, deploying, done, failed, local-boot */
    char disk[64];
    char msg[NB_MSG];
    uint64_t first_ms, last_ms;
    bool deployed;
    unsigned boots;
};

struct netboot {
    struct netboot_config c;
    char base[128];            /* http://ADDR:PORT */
    struct buf kernel, initrd;
    pthread_mutex_t mu;
    struct nb_machine *m;
    size_t n;
    pid_t pid;
    char args[NB_MAX_ARGS][600];   /* dnsmasq's argv, built before fork */
};

static int load_file(const char *dir, const char *name, struct buf *b, struct ds_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rbe");
    if (!f)
        return ds_errno(e, "netboot: cannot open %s (build it with netboot/build-bootenv.sh)", path);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (b->len + n > NB_MAX_FILE || buf_put(b, tmp, n)) {
            fclose(f);
            return ds_errf(e, "netboot: %s: too large or out of memory", path);
        }
    bool bad = ferror(f);
    fclose(f);
    if (bad)
        return ds_errf(e, "netboot: cannot read %s", path);
    if (!b->len)
        return ds_errf(e, "netboot: %s is empty", path);
    return 0;
}

int netboot_norm_mac(const char *s, size_t len, char out[18])
{
    if (len != 17)
        return -1;
    for (size_t i = 0; i < 17; i++) {
        char ch = s[i];
        if (i % 3 == 2) {
            if (ch != ':' && ch != '-')
                return -1;
            out[i] = ':';
        } else {
            if (!isxdigit((unsigned char)ch))
                return -1;
            out[i] = (char)tolower((unsigned char)ch);
        }
    }
    out[17] = 0;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool netboot_query(const char *q, size_t qlen, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key), i = 0;
    if (!cap)
        return false;
    while (i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        if (end - i > kl && !memcmp(q + i, key, kl) && q[i + kl] == '=') {
            size_t o = 0;
            for (size_t j = i + kl + 1; j < end; j++) {
                int ch = (unsigned char)q[j];
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%') {
                    int h, l;
                    if (j + 2 >= end)
                        return false;
                    if ((h = hexval(q[j + 1])) < 0 || (l = hexval(q[j + 2])) < 0)
                        return false;
                    ch = h * 16 + l;
                    j += 2;
                }
                if (ch == '\n' || ch == '\r' || ch == '\t')
                    ch = ' ';
                if (ch < 0x20 || ch > 0x7e)
                    continue;          /* printable ASCII only: it ends up in JSON and on a web page */
                if (o + 1 < cap)
                    out[o++] = (char)ch;
            }
            out[o] = 0;
            return true;
        }
        i = end + 1;
    }
    return false;
}

static void json_str(struct buf *b, const char *s)
{
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_put(b, "\\", 1);
        buf_put(b, s, 1);
    }
    buf_put(b, "\"", 1);
}

/* the machine with this MAC, added if new (NULL when the table is full); call with mu held */
static struct nb_machine *machine(struct netboot *nb, const char *mac, uint64_t now)
{
    for (size_t i = 0; i < nb->n; i++)
        if (!strcmp(nb->m[i].mac, mac))
            return &nb->m[i];
    if (nb->n >= NB_MAX_MACHINES)
        return NULL;
    struct nb_machine *x = &nb->m[nb->n++];
    memset(x, 0, sizeof *x);
    memcpy(x->mac, mac, sizeof x->mac);
    x->first_ms = now;
    return x;
}

static void set_state(struct nb_machine *x, const char *state, const char *msg, uint64_t now)
{
    snprintf(x->state, sizeof x->state, "%s", state);
    snprintf(x->msg, sizeof x->msg, "%s", msg ? msg : "");
    x->last_ms = now;
}

static void boot_script(struct netboot *nb, const char *query, size_t qlen, struct tracker_http_reply *r)
{
    char raw[64], mac[18];
    r->content_type = "text/plain";
    if (!netboot_query(query, qlen, "mac", raw, sizeof raw) || netboot_norm_mac(raw, strlen(raw), mac)) {
        /* first request (from the DHCP filename): come back with this NIC's MAC */
        buf_printf(&r->body, "#!ipxe\nchain %s/netboot/boot.ipxe?mac=${netX/mac}\n", nb->base);
        return;
    }
    uint64_t now = net_now_ms();
    bool deployed = false;
    pthread_mutex_lock(&nb->mu);
    struct nb_machine *x = machine(nb, mac, now);
    if (x) {
        x->boots++;
        deployed = x->deployed;
        if (deployed)
            set_state(x, "local-boot", "deployed; told to boot from its disk", now);
        else
            set_state(x, "booting", "loading the deploy environment", now);
    }
    pthread_mutex_unlock(&nb->mu);
    if (deployed) {
        fprintf(stderr, "netboot: %s is deployed: booting it from its local disk\n", mac);
        buf_printf(&r->body,
                   "#!ipxe\necho diskswarm: %s is deployed; booting from the local disk\n"
                   "sanboot --no-describe --drive 0x80 || exit\n",
                   mac);
        return;
    }
    fprintf(stderr, "netboot: %s: sending the deploy environment\n", mac);
    buf_printf(&r->body,
               "#!ipxe\necho diskswarm: deploying %s from %s\n"
               "kernel %s/netboot/vmlinuz initrd=initrd.img BOOTIF=01-${netX/mac:hexhyp} ds.server=%s "
               "ds.disk=%s ds.then=%s console=tty0 console=ttyS0,115200n8 %s\n"
               "initrd %s/netboot/initrd.img\n"
               "boot || goto retry\n"
               ":retry\necho diskswarm: loading the deploy environment failed; retrying in 10 s\nsleep 10\n"
               "chain %s/netboot/boot.ipxe?mac=${netX/mac}\n",
               mac, nb->base, nb->base, nb->base, nb->c.disk, nb->c.then,
               nb->c.kernel_args ? nb->c.kernel_args : "", nb->base, nb->base);
}

static void report(struct netboot *nb, const char *query, size_t qlen, struct tracker_http_reply *r)
{
    char raw[64], mac[18], state[16], msg[NB_MSG], ip[48], disk[64];
    r->content_type = "text/plain";
    if (!netboot_query(query, qlen, "mac", raw, sizeof raw) || netboot_norm_mac(raw, strlen(raw), mac) ||
        !netboot_query(query, qlen, "state", state, sizeof state)) {
        r->status = 400;
        buf_printf(&r->body, "want mac=MAC&state=STATE\n");
        return;
    }
    static const char *const known[] = {"booted", "deploying", "done", "failed"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok |= !strcmp(state, known[i]);
    if (!ok) {
        r->status = 400;
        buf_printf(&r->body, "unknown state\n");
        return;
    }
    if (!netboot_query(query, qlen, "msg", msg, sizeof msg))
        msg[0] = 0;
    uint64_t now = net_now_ms();
    pthread_mutex_lock(&nb->mu);
    struct nb_machine *x = machine(nb, mac, now);
    if (x) {
        if (netboot_query(query, qlen, "ip", ip, sizeof ip))
            snprintf(x->ip, sizeof x->ip, "%s", ip);
        if (netboot_query(query, qlen, "disk", disk, sizeof disk))
            snprintf(x->disk, sizeof x->disk, "%s", disk);
        set_state(x, state, msg, now);
        if (!strcmp(state, "done"))
            x->deployed = true;
    }
    pthread_mutex_unlock(&nb->mu);
    fprintf(stderr, "netboot: %s %s%s%s\n", mac, state, msg[0] ? ": " : "", msg);
    buf_printf(&r->body, x ? "ok\n" : "table full\n");
}

static void status_json(struct netboot *nb, struct buf *b)
{
    uint64_t now = net_now_ms();
    buf_printf(b, "{\"format\":\"diskswarm-netboot\",\"version\":1,\"machines\":[");
    pthread_mutex_lock(&nb->mu);
    for (size_t i = 0; i < nb->n; i++) {
        const struct nb_machine *x = &nb->m[i];
        buf_printf(b, "%s{\"mac\":\"%s\",\"ip\":", i ? "," : "", x->mac);
        json_str(b, x->ip);
        buf_printf(b, ",\"state\":");
        json_str(b, x->state);
        buf_printf(b, ",\"disk\":");
        json_str(b, x->disk);
        buf_printf(b, ",\"message\":");
        json_str(b, x->msg);
        buf_printf(b, ",\"deployed\":%s,\"boots\":%u,\"first_seen_s\":%.1f,\"updated_s\":%.1f}",
                   x->deployed ? "true" : "false", x->boots, (double)(now - x->first_ms) / 1000.0,
                   (double)(now - x->last_ms) / 1000.0);
    }
    pthread_mutex_unlock(&nb->mu);
    buf_printf(b, "]}\n");
}

static bool path_is(const char *p, size_t pl, const char *want)
{
    return pl == strlen(want) && !memcmp(p, want, pl);
}

bool netboot_http(struct netboot *nb, const char *path, size_t plen, const char *query, size_t qlen,
                  struct tracker_http_reply *r)
{
    if (!nb)
        return false;
    if (path_is(path, plen, "/netboot/boot.ipxe")) {
        boot_script(nb, query, qlen, r);
    } else if (path_is(path, plen, "/netboot/vmlinuz")) {
        r->content_type = "application/octet-stream";
        buf_put(&r->body, nb->kernel.data, nb->kernel.len);
    } else if (path_is(path, plen, "/netboot/initrd.img")) {
        r->content_type = "application/octet-stream";
        buf_put(&r->body, nb->initrd.data, nb->initrd.len);
    } else if (path_is(path, plen, "/netboot/report")) {
        report(nb, query, qlen, r);
    } else if (path_is(path, plen, "/netboot.json")) {
        r->content_type = "application/json";
        status_json(nb, &r->body);
    } else {
        return false;
    }
    return true;
}

static bool is_file(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* the full path of prog (as execvp would find it), resolved before fork so the child only calls execv */
static int find_program(const char *prog, char *out, size_t cap)
{
    if (strchr(prog, '/')) {
        snprintf(out, cap, "%s", prog);
        return access(out, X_OK);
    }
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin", path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, prog);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

static int spawn_dnsmasq(struct netboot *nb, struct ds_err *e)
{
    const struct netboot_config *c = &nb->c;
    char prog[4096];
    if (find_program(c->dnsmasq ? c->dnsmasq : "dnsmasq", prog, sizeof prog))
        return ds_errf(e, "netboot: %s not found (Debian package dnsmasq-base)", c->dnsmasq ? c->dnsmasq : "dnsmasq");
    const char *tftp = c->tftp_root;
    if (!tftp && is_file("/usr/lib/ipxe", "undionly.kpxe"))
        tftp = "/usr/lib/ipxe";
    if (c->tftp_root && !is_file(c->tftp_root, "undionly.kpxe"))
        return ds_errf(e, "netboot: %s has no undionly.kpxe", c->tftp_root);

    char (*a)[600] = nb->args;
    char *argv[NB_MAX_ARGS + 1];
    int n = 0;
#define ARG(...) snprintf(a[n], sizeof a[n], __VA_ARGS__), argv[n] = a[n], n++
    /* NB_MAX_ARGS bounds the list below (at most 26 entries) */
    ARG("dnsmasq");
    ARG("--keep-in-foreground");
    ARG("--conf-file=/dev/null");        /* nothing from /etc/dnsmasq.conf */
    ARG("--port=0");                     /* DHCP/TFTP only, no DNS */
    ARG("--log-facility=-");
    ARG("--leasefile-ro");
    ARG("--pid-file=");
    if (c->iface) {
        ARG("--interface=%s", c->iface);
        ARG("--bind-interfaces");
    } else {
        ARG("--except-interface=lo");
    }
    if (c->dhcp_range)
        ARG("--dhcp-range=%s", c->dhcp_range);
    else
        ARG("--dhcp-range=%s,proxy", c->server_addr);
    /* iPXE (QEMU's NIC ROMs, or the undionly.kpxe/ipxe.efi we hand out) says so in option 175 / user class */
    ARG("--dhcp-match=set:ipxe,175");
    ARG("--dhcp-userclass=set:ipxe,iPXE");
    ARG("--dhcp-match=set:efi64,option:client-arch,7");
    ARG("--dhcp-match=set:efi64,option:client-arch,9");
    ARG("--dhcp-boot=tag:ipxe,%s/netboot/boot.ipxe", nb->base);
    if (tftp) {
        ARG("--enable-tftp");
        ARG("--tftp-root=%s", tftp);
        ARG("--tftp-secure");
        ARG("--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi");
        ARG("--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe");
        if (!c->dhcp_range) {
            ARG("--pxe-service=tag:!ipxe,x86PC,\"diskswarm\",undionly.kpxe");
            ARG("--pxe-service=tag:!ipxe,x86-64_EFI,\"diskswarm\",ipxe.efi");
            ARG("--pxe-prompt=\"diskswarm\",0");
        }
    }
#undef ARG
    argv[n] = NULL;
    fprintf(stderr, "netboot: starting");
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", argv[i]);
    fputc('\n', stderr);
    fflush(stderr);

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return ds_errno(e, "netboot: fork");
    if (pid == 0) {
        /* only async-signal-safe calls here: we were forked from a threaded process */
        prctl(PR_SET_PDEATHSIG, SIGTERM);  /* dnsmasq never outlives serve, even after kill -9 */
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(prog, argv);
        _exit(127);
    }
    nb->pid = pid;
    /* a bad option or a busy port makes dnsmasq exit at once */
    for (int i = 0; i < 10; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            nb->pid = 0;
            return ds_errf(e, "netboot: dnsmasq exited at start (status %d; its message is above)",
                           WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
    }
    return 0;
}

int netboot_start(struct netboot **out, const struct netboot_config *c, struct ds_err *e)
{
    *out = NULL;
    if (!c->boot_dir || !c->server_addr || !c->http_port)
        return ds_errf(e, "netboot: needs the boot directory, the server address and the HTTP port");
    for (const char *p = c->server_addr; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            return ds_errf(e, "netboot: the server address must be an IPv4 address, not '%s'", c->server_addr);
    if (c->then && strcmp(c->then, "reboot") && strcmp(c->then, "poweroff"))
        return ds_errf(e, "netboot: then must be reboot or poweroff, not '%s'", c->then);
    const char *strs[] = {c->disk, c->kernel_args, c->dhcp_range, c->iface};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        for (const char *p = strs[i]; p && *p; p++)
            if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\'' || *p == '\\')
                return ds_errf(e, "netboot: unexpected character in '%s'", strs[i]);
    if (c->disk && (strchr(c->disk, ' ') || (strcmp(c->disk, "auto") && strncmp(c->disk, "/dev/", 5))))
        return ds_errf(e, "netboot: the disk is \"auto\" or /dev/NAME, not '%s'", c->disk);
    struct netboot *nb = calloc(1, sizeof *nb);
    if (!nb)
        return ds_errf(e, "out of memory");
    nb->c = *c;
    if (!nb->c.disk)
        nb->c.disk = "auto";
    if (!nb->c.then)
        nb->c.then = "reboot";
    nb->m = calloc(NB_MAX_MACHINES, sizeof *nb->m);
    pthread_mutex_init(&nb->mu, NULL);
    snprintf(nb->base, sizeof nb->base, "http://%s:%u", c->server_addr, c->http_port);
    if (!nb->m) {
        netboot_stop(nb);
        return ds_errf(e, "out of memory");
    }
    if (load_file(c->boot_dir, "vmlinuz", &nb->kernel, e) || load_file(c->boot_dir, "initrd.img", &nb->initrd, e) ||
        (!c->no_dhcp && spawn_dnsmasq(nb, e))) {
        netboot_stop(nb);
        return -1;
    }
    *out = nb;
    return 0;
}

size_t netboot_local_boots(struct netboot *nb)
{
    size_t k = 0;
    if (!nb)
        return 0;
    pthread_mutex_lock(&nb->mu);
    for (size_t i = 0; i < nb->n; i++)
        if (nb->m[i].deployed && !strcmp(nb->m[i].state, "local-boot"))
            k++;
    pthread_mutex_unlock(&nb->mu);
    return k;
}

bool netboot_alive(struct netboot *nb)
{
    if (!nb)
        return false;
    if (nb->c.no_dhcp)
        return true;
    if (!nb->pid)
        return false;
    int st;
    if (waitpid(nb->pid, &st, WNOHANG) == nb->pid) {
        nb->pid = 0;
        return false;
    }
    return true;
}

void netboot_stop(struct netboot *nb)
{
    if (!nb)
        return;
    if (nb->pid > 0) {
        kill(nb->pid, SIGTERM);
        bool gone = false;
        for (int i = 0; i < 60 && !gone; i++) {
            int st;
            if (waitpid(nb->pid, &st, WNOHANG) == nb->pid)
                gone = true;
            else {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        if (!gone) {
            kill(nb->pid, SIGKILL);
            waitpid(nb->pid, NULL, 0);
        }
    }
    buf_free(&nb->kernel);
    buf_free(&nb->initrd);
    free(nb->m);
    pthread_mutex_destroy(&nb->mu);
    free(nb);
}
