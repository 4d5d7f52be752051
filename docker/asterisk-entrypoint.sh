#!/bin/sh
# Write the installation's own Asterisk files from the environment, then run Asterisk.
# The same text `callcontrol pbx up` writes (callcontrol/pbx/devpbx.py):
#   pjsip_local.conf  UDP transport (CALLCONTROL_SIP_BIND) + carrier identify
#                     (CALLCONTROL_CARRIER_IPS, comma-separated addresses/CIDRs)
#   ari_user.conf     ARI user CALLCONTROL_ARI_USERNAME / CALLCONTROL_ARI_PASSWORD
set -eu
set -f  # no globbing of CARRIER_IPS

: "${CALLCONTROL_ARI_PASSWORD:?set CALLCONTROL_ARI_PASSWORD (docker/.env); there is no default}"
ari_user="${CALLCONTROL_ARI_USERNAME:-callcontrol}"
sip_bind="${CALLCONTROL_SIP_BIND:-0.0.0.0:5060}"
carrier_ips="${CALLCONTROL_CARRIER_IPS:-127.0.0.1}"

case "$CALLCONTROL_ARI_PASSWORD$ari_user" in
  *[\;[:space:][:cntrl:]]*)
    echo "CALLCONTROL_ARI_PASSWORD/USERNAME must not contain ';', white space or control characters" >&2
    exit 64
    ;;
esac
case "$ari_user" in
  *[][:]*) echo "CALLCONTROL_ARI_USERNAME must not contain '[', ']' or ':'" >&2; exit 64 ;;
esac
# Only what an address, a CIDR or host:port is made of: nothing that could start a new
# line or section of the generated file (the settings of `callcontrol` check the same).
case "$sip_bind" in
  *[!0-9A-Za-z.:\[\]-]*|"")
    echo "CALLCONTROL_SIP_BIND must be ADDRESS:PORT, got a value with other characters" >&2
    exit 64
    ;;
esac
case "$carrier_ips" in
  *[!0-9A-Fa-f.:/,\ ]*|"")
    echo "CALLCONTROL_CARRIER_IPS must be addresses or CIDRs separated by commas" >&2
    exit 64
    ;;
esac

etc=/etc/asterisk
umask 027
{
  echo "; written by docker/asterisk-entrypoint.sh from CALLCONTROL_SIP_BIND and CALLCONTROL_CARRIER_IPS"
  echo "[transport-udp]"
  echo "type = transport"
  echo "protocol = udp"
  echo "bind = $sip_bind"
  echo ""
  echo "[carrier]"
  echo "type = identify"
  echo "endpoint = carrier"
  for ip in $(echo "$carrier_ips" | tr ',' ' '); do
    echo "match = $ip"
  done
} > "$etc/pjsip_local.conf"

printf '[%s]\ntype = user\nread_only = no\npassword_format = plain\npassword = %s\n' \
  "$ari_user" "$CALLCONTROL_ARI_PASSWORD" > "$etc/ari_user.conf"

for dir in /run/asterisk /var/lib/asterisk /var/log/asterisk /var/spool/asterisk \
           /var/cache/asterisk "$etc"; do
  mkdir -p "$dir"
  chown -R asterisk:asterisk "$dir"
done
chmod 0640 "$etc/pjsip_local.conf" "$etc/ari_user.conf"

exec /usr/sbin/asterisk -f -n -U asterisk -G asterisk "$@"
