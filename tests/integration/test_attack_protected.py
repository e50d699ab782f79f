"""Attacks on protected mode by splitting the world (issue 10, finding 10).

Protected mode accepts a listener beyond loopback without authentication
only when the allow rules restrict who may connect. It judges the union of
the `from` networks of every allow rule: admitting a sixteenth or more of
the globally reachable IPv4 (a /4) or IPv6 (a /7 of 2000::/3) space counts as
open, however the networks are cut and spread over rules. (PROXY listeners
whose trust list is open: test_attack_spoofing.py.)
"""
import signal

import pytest

from harness import beyond_loopback_args, free_port, open_tunnel, scaled, wait_until
from ops_support import ops  # noqa: F401  (the fixture)
from security_support import echo_ok, run_expect_exit

SPLIT_WORLDS = {
    "two-halves": ["allow from 0.0.0.0/1,128.0.0.0/1"],
    "two-rules": ["allow from 0.0.0.0/1", "allow from 128.0.0.0/1 cmd connect"],
    "deny-between": ["allow from 0.0.0.0/2,64.0.0.0/2", "deny from 10.0.0.0/8",
                     "allow from 128.0.0.0/1"],
    "all-but-10/8": ["allow from 0.0.0.0/5,8.0.0.0/7,11.0.0.0/8,12.0.0.0/6,16.0.0.0/4,"
                     "32.0.0.0/3,64.0.0.0/2,128.0.0.0/1"],
    "half-of-v4": ["allow from 128.0.0.0/1"],
    "v6-halves": ["allow from ::/1,8000::/1"],
    "global-v6-split": ["allow from 2000::/4", "allow from 3000::/4"],
}


def rule_args(rules):
    return [a for r in rules for a in ("--rule", r)]


@pytest.mark.parametrize("rules", SPLIT_WORLDS.values(), ids=SPLIT_WORLDS.keys())
def test_split_world_allow_rules_are_refused_like_0_0_0_0_0(socks5d_bin, rules):
    port = free_port("0.0.0.0")
    r = run_expect_exit(socks5d_bin, "-l", f"0.0.0.0:{port}", "--auth", "none",
                        *rule_args(rules), *beyond_loopback_args(), timeout=scaled(3))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"open proxy on 0.0.0.0:{port}" in r.stderr, r.stderr


def test_restricted_networks_spread_over_rules_still_start_and_serve(socks5d, echo):
    port = free_port("0.0.0.0")
    srv = socks5d("--auth", "none", *beyond_loopback_args(),
                  *rule_args(["allow from 127.0.0.0/8,10.0.0.0/8", "allow from 192.0.2.0/24",
                              "allow from 2001:db8::/32,fd00::/8", "deny"]),
                  listen=[f"0.0.0.0:{port}"])
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"restricted")


def test_reload_to_a_split_world_is_refused_and_the_old_rules_stay(ops, echo):
    def conf(rules):
        return lambda ports: [f"listen 0.0.0.0:{ports[0]}", "auth none", *rules]

    srv, ports, path = ops.start_conf(conf(["allow from 127.0.0.0/8"]),
                                      args=beyond_loopback_args(),
                                      listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    path.write_text("\n".join(conf(["allow from 0.0.0.0/1", "allow from 128.0.0.0/1"])(ports))
                    + "\n")
    srv.signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in srv.log() or "configuration reloaded" in srv.log(),
               scaled(10), what="the outcome of the reload")
    log = srv.log()
    assert "reload failed" in log and "configuration reloaded" not in log, log
    assert "open proxy" in log, log
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"old rules")
