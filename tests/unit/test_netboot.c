/* test_netboot.c — serve --netboot's HTTP side without dnsmasq (no_dhcp): MAC and query parsing, the iPXE
 * script before and after a machine reports a finished deploy, report validation and /netboot.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "netboot.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void remove_dir(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/vmlinuz", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/initrd.img", dir);
    unlink(p);
    rmdir(dir);
}

/* GET path?query → body as a string (static buffer), status in *st; NULL when the route is not netboot's */
static const char *get(struct netboot *nb, const char *path, const char *query, unsigned *st)
{
    static char out[8192];
    struct tracker_http_reply r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    if (!netboot_http(nb, path, strlen(path), query, strlen(query), &r))
        return NULL;
    snprintf(out, sizeof out, "%.*s", (int)r.body.len, r.body.data ? (const char *)r.body.data : "");
    *st = r.status;
    buf_free(&r.body);
    return out;
}

TEST(mac)
{
    char m[18];
    CHECK_EQ_INT(netboot_norm_mac("52:54:00:AB:cd:01", 17, m), 0);
    CHECK_STR(m, "52:54:00:ab:cd:01");
    CHECK_EQ_INT(netboot_norm_mac("52-54-00-ab-cd-02", 17, m), 0);
    CHECK_STR(m, "52:54:00:ab:cd:02");
    CHECK_EQ_INT(netboot_norm_mac("52:54:00:ab:cd", 14, m), -1);
    CHECK_EQ_INT(netboot_norm_mac("52:54:00:ab:cd:0g", 17, m), -1);
    CHECK_EQ_INT(netboot_norm_mac("5254:00:ab:cd:011", 17, m), -1);
}

TEST(query)
{
    char v[32];
    const char *q = "mac=52%3a54&state=failed&msg=too+small%21%0a%22x%22&empty=&bad=%4";
    CHECK(netboot_query(q, strlen(q), "mac", v, sizeof v));
    CHECK_STR(v, "52:54");
    CHECK(netboot_query(q, strlen(q), "msg", v, sizeof v));
    CHECK_STR(v, "too small! \"x\"");
    CHECK(netboot_query(q, strlen(q), "empty", v, sizeof v));
    CHECK_STR(v, "");
    CHECK(!netboot_query(q, strlen(q), "bad", v, sizeof v));      /* truncated %-escape */
    CHECK(!netboot_query(q, strlen(q), "ms", v, sizeof v));       /* keys match whole */
    CHECK(!netboot_query(q, strlen(q), "nothere", v, sizeof v));
    char tiny[4];
    CHECK(netboot_query(q, strlen(q), "state", tiny, sizeof tiny));
    CHECK_STR(tiny, "fai");
    const char *ctl = "msg=%01a%7fb%ffc";                             /* controls and 8-bit bytes dropped */
    CHECK(netboot_query(ctl, strlen(ctl), "msg", v, sizeof v));
    CHECK_STR(v, "abc");
}

TEST(routes)
{
    struct netboot_config c;
    memset(&c, 0, sizeof c);
    c.boot_dir = dir;
    c.server_addr = "198.18.0.1";
    c.http_port = 6969;
    c.no_dhcp = true;
    c.kernel_args = "quiet";
    struct netboot *nb = NULL;
    struct ds_err e;
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), 0);
    if (!nb)
        return;
    CHECK(netboot_alive(nb));
    unsigned st = 0;
    const char *b;
    CHECK(get(nb, "/announce", "", &st) == NULL);
    CHECK(get(nb, "/netboot/other", "", &st) == NULL);

    b = get(nb, "/netboot/boot.ipxe", "", &st);
    CHECK(b && strstr(b, "chain http://198.18.0.1:6969/netboot/boot.ipxe?mac=${netX/mac}"));
    b = get(nb, "/netboot/boot.ipxe", "mac=52:54:00:00:00:01", &st);
    CHECK(b && strstr(b, "kernel http://198.18.0.1:6969/netboot/vmlinuz "));
    CHECK(b && strstr(b, " ds.server=http://198.18.0.1:6969 ds.disk=auto ds.then=reboot "));
    CHECK(b && strstr(b, " quiet\n"));
    CHECK(b && strstr(b, "initrd http://198.18.0.1:6969/netboot/initrd.img\n"));
    CHECK(b && !strstr(b, "sanboot"));
    b = get(nb, "/netboot/vmlinuz", "", &st);
    CHECK_STR(b, "KERNEL");
    b = get(nb, "/netboot/initrd.img", "", &st);
    CHECK_STR(b, "INITRD");

    /* reports: bad ones refused; a failure does not mark the machine deployed, done does */
    b = get(nb, "/netboot/report", "mac=nonsense&state=done", &st);
    CHECK_EQ_INT(st, 400);
    b = get(nb, "/netboot/report", "mac=52:54:00:00:00:01&state=hacked", &st);
    CHECK_EQ_INT(st, 400);
    st = 200;
    b = get(nb, "/netboot/report", "mac=52:54:00:00:00:01&state=failed&ip=198.18.0.100&disk=%2fdev%2fvda"
                                   "&msg=%2fdev%2fvda%20is%20too%20small", &st);
    CHECK_EQ_INT(st, 200);
    b = get(nb, "/netboot/boot.ipxe", "mac=52:54:00:00:00:01", &st);
    CHECK(b && strstr(b, "kernel ") && !strstr(b, "sanboot"));
    b = get(nb, "/netboot.json", "", &st);
    CHECK(b && strstr(b, "\"mac\":\"52:54:00:00:00:01\",\"ip\":\"198.18.0.100\",\"state\":\"booting\""));
    b = get(nb, "/netboot/report", "mac=52-54-00-00-00-01&state=failed&msg=%2fdev%2fvda%20is%20too%20small", &st);
    b = get(nb, "/netboot.json", "", &st);
    CHECK(b && strstr(b, "\"state\":\"failed\",\"disk\":\"/dev/vda\",\"message\":\"/dev/vda is too small\","
                         "\"deployed\":false"));
    b = get(nb, "/netboot/report", "mac=52:54:00:00:00:01&state=done&msg=ok", &st);
    b = get(nb, "/netboot/boot.ipxe", "mac=52:54:00:00:00:01", &st);
    CHECK(b && strstr(b, "sanboot --no-describe --drive 0x80 || exit") && !strstr(b, "kernel "));
    b = get(nb, "/netboot/boot.ipxe", "mac=52:54:00:00:00:02", &st);   /* another machine still deploys */
    CHECK(b && strstr(b, "kernel "));
    b = get(nb, "/netboot.json", "", &st);
    CHECK(b && strstr(b, "\"state\":\"local-boot\""));
    CHECK(b && strstr(b, "\"deployed\":true,\"boots\":3"));
    CHECK(b && strstr(b, "\"mac\":\"52:54:00:00:00:02\""));
    CHECK_EQ_INT(netboot_local_boots(nb), 1);
    netboot_stop(nb);
}

TEST(config_refused)
{
    struct netboot_config c;
    memset(&c, 0, sizeof c);
    c.boot_dir = dir;
    c.server_addr = "198.18.0.1";
    c.http_port = 6969;
    c.no_dhcp = true;
    struct netboot *nb = NULL;
    struct ds_err e;
    c.disk = "sda";
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), -1);
    c.disk = "/dev/sda";
    c.kernel_args = "a\"b";
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), -1);
    c.kernel_args = NULL;
    c.then = "explode";
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), -1);
    c.then = NULL;
    c.server_addr = "server.example";
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), -1);
    c.server_addr = "198.18.0.1";
    c.boot_dir = "/nonexistent-diskswarm-dir";
    CHECK_EQ_INT(netboot_start(&nb, &c, &e), -1);
    CHECK(nb == NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_netboot.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    write_file("vmlinuz", "KERNEL");
    write_file("initrd.img", "INITRD");
    RUN(mac);
    RUN(query);
    RUN(routes);
    RUN(config_refused);
    remove_dir();
    return check_summary();
}
