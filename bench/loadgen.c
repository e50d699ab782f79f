/* loadgen: SOCKS5 load generator with built-in loopback targets.
 * usage: loadgen SCENARIO [options]; prints one JSON object on stdout. */
#include "net.h"
#include "opts.h"
#include "scenarios.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage[] =
    "usage: loadgen SCENARIO [options]\n"
    "scenarios: tput-up tput-down crr rr fair udp idle trickle sink\n"
    "  -x, --proxy IP:PORT    SOCKS5 proxy (default: direct to the target)\n"
    "  -F, --forward IP:PORT  plain TCP forwarder instead of a proxy: connect to\n"
    "                         it and send no SOCKS handshake; it listens on PORT\n"
    "                         for the target on -T's port, PORT+1 for the next\n"
    "                         (fair's echo). Needs -T; tput, crr, rr, fair, trickle\n"
    "  -T, --target-port P    TCP targets listen on P, P+1, ... in the order the\n"
    "                         scenario starts them (default: random free ports)\n"
    "  -a, --auth USER:PASS   username/password authentication (RFC 1929)\n"
    "  -D, --domain NAME      CONNECT by domain name instead of IPv4\n"
    "  -d, --duration S       measured seconds (default 3)\n"
    "  -w, --warmup S         unmeasured seconds before (default 0.5)\n"
    "  -n, --streams N        bulk streams: tput, fair (default 1)\n"
    "  -c, --clients N        concurrent clients: crr (default 64)\n"
    "  -s, --size B           message or datagram payload bytes (default 64)\n"
    "  -k, --count K          idle, trickle: tunnels to open (default 1000)\n"
    "  -i, --interval MS      trickle: each tunnel writes once per MS (default 100)\n"
    "  -t, --target IP:PORT   idle: sink address from `loadgen sink`\n"
    "  -W, --window W         udp: datagrams in flight (default 16)\n"
    "  -H, --hold S           idle, trickle: wait at most S seconds for a line on\n"
    "                         stdin at each step; sink: lifetime (default 120)\n"
    "  -6, --listen6          TCP targets listen on [::] (IPv6 and IPv4), so a\n"
    "                         -D name with an IPv6 address reaches them\n";

static const struct option longopts[] = {{"proxy", required_argument, NULL, 'x'},
                                         {"forward", required_argument, NULL, 'F'},
                                         {"target-port", required_argument, NULL, 'T'},
                                         {"auth", required_argument, NULL, 'a'},
                                         {"domain", required_argument, NULL, 'D'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"streams", required_argument, NULL, 'n'},
                                         {"clients", required_argument, NULL, 'c'},
                                         {"size", required_argument, NULL, 's'},
                                         {"count", required_argument, NULL, 'k'},
                                         {"target", required_argument, NULL, 't'},
                                         {"window", required_argument, NULL, 'W'},
                                         {"hold", required_argument, NULL, 'H'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"listen6", no_argument, NULL, '6'},
                                         {NULL, 0, NULL, 0}};

static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "loadgen: bad %s: %s\n%s", what, arg, usage);
    return -1;
}

static int parse_num(const char *arg, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *arg, int lo, int hi, int *out)
{
    double v;
    if (parse_num(arg, lo, hi, &v) < 0 || v != (int)v)
        return -1;
    *out = (int)v;
    return 0;
}

/* USER:PASS; the strings point into arg, which outlives the run. */
static int parse_auth(char *arg, struct proxy_cfg *p)
{
    char *colon = strchr(arg, ':');
    if (!colon || colon == arg || strlen(arg) > 255 || strlen(colon + 1) > 255)
        return -1;
    *colon = '\0';
    p->user = arg;
    p->pass = colon + 1;
    return 0;
}

static int parse_opt(int c, char *arg, struct opts *o)
{
    switch (c) {
    case 'x':
    case 'F':
        if (!o->proxy.direct)
            return bad("option", "-x and -F name one proxy between them");
        o->proxy.direct = false;
        o->proxy.forward = c == 'F';
        return net_parse_addr(arg, &o->proxy.addr) < 0 ? bad(c == 'F' ? "forward" : "proxy", arg)
                                                       : 0;
    case 'T':
        return parse_int(arg, 1, 65000, &o->target_port) < 0 ? bad("target port", arg) : 0;
    case 'a':
        return parse_auth(arg, &o->proxy) < 0 ? bad("auth", arg) : 0;
    case 'D':
        o->domain = arg;
        return strlen(arg) > 255 ? bad("domain", arg) : 0;
    case 'd':
        return parse_num(arg, 0.1, 600, &o->duration) < 0 ? bad("duration", arg) : 0;
    case 'w':
        return parse_num(arg, 0, 60, &o->warmup) < 0 ? bad("warmup", arg) : 0;
    case 'H':
        return parse_num(arg, 0, 3600, &o->hold) < 0 ? bad("hold", arg) : 0;
    case 'n':
        return parse_int(arg, 1, 1000, &o->streams) < 0 ? bad("streams", arg) : 0;
    case 'c':
        return parse_int(arg, 1, 5000, &o->clients) < 0 ? bad("clients", arg) : 0;
    case 's':
        return parse_int(arg, 1, 65000, &o->size) < 0 ? bad("size", arg) : 0;
    case 'k':
        return parse_int(arg, 1, 100000, &o->count) < 0 ? bad("count", arg) : 0;
    case 'i':
        return parse_int(arg, 1, 10000, &o->interval_ms) < 0 ? bad("interval", arg) : 0;
    case 'W':
        return parse_int(arg, 1, 4096, &o->window) < 0 ? bad("window", arg) : 0;
    case '6':
        net_listen6 = true;
        return 0;
    case 't':
        o->have_target = true;
        return net_parse_addr(arg, &o->target) < 0 ? bad("target", arg) : 0;
    default:
        fprintf(stderr, "%s", usage);
        return -1;
    }
}

/* A forwarder relays bytes to a fixed target: nothing to authenticate or
 * name, no UDP, and idle's sink (-t) is not among its ports. */
static int check_forward(struct opts *o)
{
    net_listen_port = (unsigned)o->target_port;
    if (!o->proxy.forward)
        return 0;
    if (!o->target_port)
        return bad("forward", "-F needs -T (the port its first target listens on)");
    if (o->proxy.user || o->domain)
        return bad("forward", "-a and -D need a SOCKS proxy, not a plain forwarder");
    if (strcmp(o->scenario, "udp") == 0 || strcmp(o->scenario, "idle") == 0)
        return bad("forward", "udp and idle need a SOCKS proxy, not a plain forwarder");
    o->proxy.port_shift = ntohs(o->proxy.addr.sin_port) - o->target_port;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    int c;
    *o = (struct opts){.proxy.direct = true,
                       .duration = 3,
                       .warmup = 0.5,
                       .hold = 120,
                       .streams = 1,
                       .clients = 64,
                       .size = 64,
                       .count = 1000,
                       .window = 16,
                       .interval_ms = 100};
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "%s", usage);
        return -1;
    }
    o->scenario = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "x:F:T:a:D:d:w:n:c:s:k:t:W:H:i:6", longopts, NULL)) != -1) {
        if (parse_opt(c, optarg, o) < 0)
            return -1;
    }
    if (optind != argc)
        return bad("argument", argv[optind]);
    return check_forward(o);
}

/* 9,000 idle tunnels need 9,000 descriptors here: use the whole hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        perror("loadgen: raising RLIMIT_NOFILE");
}

static int dispatch(const struct opts *o)
{
    static const struct {
        const char *name;
        int (*run)(const struct opts *o);
    } table[] = {{"crr", scen_crr},        {"rr", scen_rr},     {"fair", scen_fair},
                 {"udp", scen_udp},        {"idle", scen_idle}, {"sink", scen_sink},
                 {"trickle", scen_trickle}};
    if (strcmp(o->scenario, "tput-up") == 0 || strcmp(o->scenario, "tput-down") == 0)
        return scen_tput(o, strcmp(o->scenario, "tput-up") == 0);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(o->scenario, table[i].name) == 0)
            return table[i].run(o);
    }
    fprintf(stderr, "loadgen: unknown scenario %s\n%s", o->scenario, usage);
    return 2;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    /* A proxy closing a tunnel mid-write must show up as an error, not kill
     * the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    return dispatch(&o);
}
