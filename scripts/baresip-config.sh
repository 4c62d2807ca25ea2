#!/usr/bin/env bash
# Writes a baresip config folder for calling voxlab, usable from any directory:
# docs/baresip/ with absolute paths, its own 1 kHz tone (made with sox) and its
# own recordings folder.
#
#   scripts/baresip-config.sh DIR [--sip HOST:PORT] [--rtp-ports LO-HI]
#                                 [--codecs PCMU,PCMA] [--tone SECONDS]
#   baresip -f DIR -e 'dsip:menu@127.0.0.1:5060'
#
#   --sip        baresip's own SIP address (default 127.0.0.1:0: a free port)
#   --rtp-ports  its RTP ports (default 30000-30999, outside voxlab's 10000-20000)
#   --codecs     the codecs it offers, in order (default: PCMU and PCMA)
#   --tone       length of the tone in seconds (default 60); the call ends with it
#
# In DIR: config, accounts, contacts, tone.wav, and heard/ where baresip's
# sndfile module records each call (dump-*-dec.wav: what baresip heard).
# Re-running it rewrites the files (the recordings are kept).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

TEMPLATE="$(cd "$(dirname "$0")/.." && pwd)/docs/baresip"
dir="" sip="127.0.0.1:0" rtp="30000-30999" codecs="" tone=60
while (($#)); do
  case "$1" in
    --sip) sip="${2:?--sip needs HOST:PORT}"; shift 2 ;;
    --rtp-ports) rtp="${2:?--rtp-ports needs LO-HI}"; shift 2 ;;
    --codecs) codecs="${2:?--codecs needs e.g. PCMU,PCMA}"; shift 2 ;;
    --tone) tone="${2:?--tone needs SECONDS}"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "baresip-config.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$dir" ] || usage; dir="$1"; shift ;;
  esac
done
[ -n "$dir" ] || usage
[[ "$rtp" =~ ^[0-9]+-[0-9]+$ ]] || { echo "baresip-config.sh: --rtp-ports wants LO-HI, not $rtp" >&2; exit 2; }
[[ "$tone" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "baresip-config.sh: --tone wants seconds, not $tone" >&2; exit 2; }
command -v sox >/dev/null || { echo "baresip-config.sh: sox is needed for the tone (apt-get install sox)" >&2; exit 1; }

mkdir -p "$dir/heard"
dir="$(cd "$dir" && pwd)"

# sed replacement text: escape \, & and the | delimiter
esc() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }

sed -e "s|^sip_listen[[:space:]].*|sip_listen\t\t$(esc "$sip")|" \
    -e "s|^rtp_ports[[:space:]].*|rtp_ports\t\t$(esc "$rtp")|" \
    -e "s|^audio_source[[:space:]].*|audio_source\t\taufile,$(esc "$dir/tone.wav")|" \
    -e "s|^snd_path[[:space:]].*|snd_path\t\t$(esc "$dir/heard")|" \
    -e "s|docs/baresip/tone.wav synth 60|$(esc "$dir/tone.wav") synth $tone|" \
    -e "s|baresip -f docs/baresip|baresip -f $(esc "$dir")|" \
    -e "/^# Run baresip from the top folder/,/^# are relative to the current directory/c\\
# Written by scripts/baresip-config.sh (absolute paths). It made the tone\\
# and you dial with:" \
    -e "/^# (scripts\/baresip-config.sh DIR writes/,/^# paths and other ports.)/d" \
    -e "s|(after 60 s)|(after $tone s)|" \
    "$TEMPLATE/config" > "$dir/config"

params=""
[ -z "$codecs" ] || params=";audio_codecs=$codecs"
sed -e "s|^<sip:me@127.0.0.1>;regint=0\$|&$(esc "$params")|" "$TEMPLATE/accounts" > "$dir/accounts"
: > "$dir/contacts"

sox -n -r 8000 -c 1 -b 16 "$dir/tone.wav" synth "$tone" sine 1000 vol 0.5

echo "baresip config written to $dir (SIP $sip, RTP $rtp, ${tone} s tone); dial with:"
echo "  baresip -f $dir -e 'dsip:menu@127.0.0.1:5060'"
