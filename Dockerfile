# socks5d in a container: built with the same `make install` as the Debian
# package, run as the unprivileged user socks5d with the configuration
# mounted read-only from the host:
#
#   docker build -t socks5d .
#   docker run -d -p 1080:1080 -v /srv/socks5d:/etc/socks5d:ro socks5d
#
# /srv/socks5d/socks5d.conf must listen beyond loopback (listen 0.0.0.0:1080)
# and so needs authentication (users /etc/socks5d/users, a file readable by
# uid 1080) or rules restricted with `from`; `socks5d -t` says what is
# missing. Ports below 1024 need --cap-add NET_BIND_SERVICE (or use 1080).
# SIGHUP (docker kill -s HUP) reloads; SIGTERM drains.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc make libc-ares-dev libcrypt-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY src src
COPY docs docs
COPY packaging packaging
RUN make -j"$(nproc)" all && make install PREFIX=/usr DESTDIR=/out && strip /out/usr/sbin/socks5d

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libc-ares2 libcrypt1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 1080 socks5d \
    && useradd --system --uid 1080 --gid socks5d --home-dir /nonexistent --shell /usr/sbin/nologin socks5d
COPY --from=build /out/usr/sbin/socks5d /usr/sbin/socks5d
COPY --from=build /out/usr/share/man /usr/share/man
COPY --from=build /out/etc/socks5d/socks5d.conf.example /usr/share/socks5d/socks5d.conf.example
VOLUME ["/etc/socks5d"]
EXPOSE 1080
USER socks5d:socks5d
ENTRYPOINT ["/usr/sbin/socks5d", "-c", "/etc/socks5d/socks5d.conf"]
