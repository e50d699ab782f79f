/* `socks5d passwd`: make or set a users-file line. */
#ifndef SOCKS5D_PASSWD_H
#define SOCKS5D_PASSWD_H

/* argv[0] is "passwd"; then [-f FILE] NAME. Reads the password from stdin
 * (twice on a terminal). Returns the exit code: 0, 1 (a system call
 * failed) or 2 (bad usage or input). */
int passwd_main(int argc, char **argv);

#endif
