/* systemd readiness notification (sd_notify): one datagram to
 * $NOTIFY_SOCKET. Written here rather than linking libsystemd: the protocol
 * is a single sendto(), and the daemon keeps one dependency fewer. */
#ifndef SOCKS5D_NOTIFY_H
#define SOCKS5D_NOTIFY_H

/* Sends "KEY=VALUE\n..." when running under systemd; a no-op otherwise. */
void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
