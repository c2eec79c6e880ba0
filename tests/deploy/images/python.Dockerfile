# The tests' stand-in for python:3.11-slim (no registry is reachable here): Debian's python3 on
# a rootfs made by mmdebstrap (tests/support/docker.py), and this machine's CA bundle, so that
# pip inside a build trusts what pip on the host trusts.
ARG ROOTFS
FROM ${ROOTFS}
COPY ca-certificates.crt /etc/ssl/certs/host-ca-certificates.crt
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
CMD ["python3"]
