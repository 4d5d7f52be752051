#!/bin/sh
# Write the installation's own Asterisk files from the environment, then run Asterisk.
# The same text `callcontrol pbx up` writes (callcontrol/pbx/devpbx.py):
#   pjsip_local.conf  UDP transport (CALLCONTROL_SIP_BIND) + carrier identify
#                     (CALLCONTROL_CARRIER_IPS, comma-separated addresses/CIDRs)
#   ari_user.conf     ARI user CALLCONTROL_ARI_USERNAME / CALLCONTROL_ARI_PASSWORD
# and the values of the shipped dialplan/ that depend on where the PBX runs, so that
# a second Asterisk on the same host (host networking) takes ports of its own:
#   http.conf         bindaddr/bindport of ARI    CALLCONTROL_ARI_BIND (127.0.0.1:8088)
#   rtp.conf          rtpstart/rtpend             CALLCONTROL_RTP_PORTS (10000-20000)
#   pjsip.conf        the carrier's contact       CALLCONTROL_CARRIER_CONTACT
#                                                 (sip:127.0.0.1:5070, the dev trunk)
#   manager_local.conf  AMI's bindaddr/port       CALLCONTROL_AMI_BIND (127.0.0.1:5038)
#                     and its user (CALLCONTROL_AMI_USERNAME / CALLCONTROL_AMI_PASSWORD)
#   extensions_emergency.conf                     emergency/<CALLCONTROL_COUNTRY>.conf (GB),
#                     the emergency numbers straight to the carrier, app or no app
# /etc/hosts gets the container's host name if it lacks it: Asterisk resolves its own
# name for every call, and a lost DNS query stalls all SIP for 5 s.
set -eu
set -f  # no globbing of CARRIER_IPS

: "${CALLCONTROL_ARI_PASSWORD:?set CALLCONTROL_ARI_PASSWORD (docker/.env); there is no default}"
ari_user="${CALLCONTROL_ARI_USERNAME:-callcontrol}"
sip_bind="${CALLCONTROL_SIP_BIND:-0.0.0.0:5060}"
carrier_ips="${CALLCONTROL_CARRIER_IPS:-127.0.0.1}"
ari_bind="${CALLCONTROL_ARI_BIND:-127.0.0.1:8088}"
rtp_ports="${CALLCONTROL_RTP_PORTS:-10000-20000}"
carrier_contact="${CALLCONTROL_CARRIER_CONTACT:-sip:127.0.0.1:5070}"
ami_bind="${CALLCONTROL_AMI_BIND:-127.0.0.1:5038}"
country="${CALLCONTROL_COUNTRY:-GB}"

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

for bind in "ARI_BIND=$ari_bind" "AMI_BIND=$ami_bind"; do
  value=${bind#*=}
  case "$value" in
    *[!0-9A-Za-z.:-]*|*:|:*|"")
      echo "CALLCONTROL_${bind%%=*} must be ADDRESS:PORT (IPv4 or a host name)" >&2
      exit 64
      ;;
  esac
  case "${value##*:}" in
    *[!0-9]*) echo "CALLCONTROL_${bind%%=*} must end with :PORT" >&2; exit 64 ;;
  esac
done
rtp_start=${rtp_ports%-*}
rtp_end=${rtp_ports#*-}
case "$rtp_start:$rtp_end" in
  *[!0-9:]*|:*|*:) echo "CALLCONTROL_RTP_PORTS must be FIRST-LAST, e.g. 10000-20000" >&2; exit 64 ;;
esac
if [ "$rtp_start" -ge "$rtp_end" ] || [ "$rtp_end" -gt 65535 ]; then
  echo "CALLCONTROL_RTP_PORTS must be FIRST-LAST with FIRST < LAST <= 65535" >&2
  exit 64
fi
case "$carrier_contact" in
  sip:*) ;;
  *) echo "CALLCONTROL_CARRIER_CONTACT must be a sip: URI" >&2; exit 64 ;;
esac
case "${carrier_contact#sip:}" in
  *[!0-9A-Za-z.:@_+-]*|"")
    echo "CALLCONTROL_CARRIER_CONTACT must be sip:[user@]host[:port]" >&2
    exit 64
    ;;
esac

case "$country" in
  [A-Z][A-Z]) ;;
  *) echo "CALLCONTROL_COUNTRY must be an ISO 3166 alpha-2 code, e.g. GB" >&2; exit 64 ;;
esac

etc=${ASTERISK_ETC:-/etc/asterisk}  # another directory only for tests
# set_value FILE KEY VALUE: the value of every `KEY = ...` line; the key must be there.
set_value() {
  grep -Eq "^$2[[:space:]]*=" "$etc/$1" || {
    echo "$etc/$1 has no '$2 =' line to set (was dialplan/$1 changed?)" >&2
    exit 70
  }
  sed -i -E "s|^$2[[:space:]]*=.*|$2 = $3|" "$etc/$1"
}
set_value http.conf bindaddr "${ari_bind%:*}"
set_value http.conf bindport "${ari_bind##*:}"
set_value rtp.conf rtpstart "$rtp_start"
set_value rtp.conf rtpend "$rtp_end"
set_value pjsip.conf contact "$carrier_contact"
# AMI: the project's manager.conf takes where it listens and its one user from
# manager_local.conf (as `callcontrol pbx up` writes it); the user only when
# CALLCONTROL_AMI_PASSWORD is set (no default secret: without it AMI has no user).
# Any other manager.conf listens on 5038 unless told otherwise.
if [ -f "$etc/manager.conf" ] && grep -q 'manager_local.conf' "$etc/manager.conf"; then
  ami_user="${CALLCONTROL_AMI_USERNAME:-callcontrol}"
  case "${CALLCONTROL_AMI_PASSWORD:-}$ami_user" in
    *[\;[:space:][:cntrl:]]*)
      echo "CALLCONTROL_AMI_PASSWORD/USERNAME must not contain ';', white space or control characters" >&2
      exit 64
      ;;
  esac
  (
    umask 027
    echo "; written by docker/asterisk-entrypoint.sh from CALLCONTROL_AMI_BIND, _USERNAME, _PASSWORD"
    echo "port = ${ami_bind##*:}"
    echo "bindaddr = ${ami_bind%:*}"
    if [ -n "${CALLCONTROL_AMI_PASSWORD:-}" ]; then
      printf '\n[%s]\nsecret = %s\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n' \
        "$ami_user" "$CALLCONTROL_AMI_PASSWORD"
      printf 'read = system,call,reporting\nwrite = system,reporting\neventfilter = Event: Hangup\n'
    fi
  ) > "$etc/manager_local.conf"
elif [ -f "$etc/manager.conf" ] && grep -Eq '^port[[:space:]]*=' "$etc/manager.conf"; then
  set_value manager.conf port "${ami_bind##*:}"
  if grep -Eq '^bindaddr[[:space:]]*=' "$etc/manager.conf"; then
    set_value manager.conf bindaddr "${ami_bind%:*}"
  fi
fi

if [ -d "$etc/emergency" ]; then
  if [ ! -f "$etc/emergency/$country.conf" ]; then
    echo "no emergency dialplan for CALLCONTROL_COUNTRY=$country in $etc/emergency" >&2
    exit 64
  fi
  cp "$etc/emergency/$country.conf" "$etc/extensions_emergency.conf"
fi

host=$(hostname)
if ! grep -Eq "[[:space:]]$host([[:space:]]|\$)" /etc/hosts 2>/dev/null; then
  printf '127.0.1.1\t%s\n' "$host" >> /etc/hosts
fi

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
[ ! -f "$etc/manager_local.conf" ] || chmod 0640 "$etc/manager_local.conf"

exec /usr/sbin/asterisk -f -n -U asterisk -G asterisk "$@"
